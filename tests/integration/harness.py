"""Integration-test harness for loopbot (stdlib only).

Starts the broker binary named by $LOOPBOT_BROKER with a generated config,
runs mosquitto_pub / mosquitto_sub with timeouts, and provides a small raw
MQTT client (v3.1, v3.1.1 and v5 packets built by hand) for malformed-input
tests.

When $LOOPBOT_BROKER ends in "mosquitto" the suite runs in mosquitto mode
(reference broker): tests that check loopbot-only behaviour are skipped with
@loopbot_only("why").
"""

import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BROKER = os.environ.get("LOOPBOT_BROKER", "")
MOSQUITTO_MODE = os.path.basename(BROKER).endswith("mosquitto")
MOSQ_CLIENT_TEST = os.environ.get("MOSQ_CLIENT_TEST", "")
HOST = "127.0.0.1"

MOSQ_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQ_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
# mosquitto_sub's stdout is block-buffered on a pipe: force line buffering.
STDBUF = [shutil.which("stdbuf"), "-oL", "-eL"] if shutil.which("stdbuf") else []

VERSIONS = ("mqttv31", "mqttv311", "mqttv5")
PROTO_LEVEL = {"mqttv31": 3, "mqttv311": 4, "mqttv5": 5}


def loopbot_only(why):
    """Skip a test in mosquitto mode (it checks loopbot-specific behaviour)."""
    return unittest.skipIf(MOSQUITTO_MODE, "loopbot-only: " + why)


def broker_config(**keys):
    """Per-test broker config keys, e.g. @broker_config(max_keepalive=10)."""
    def deco(fn):
        fn.broker_config = keys
        return fn
    return deco


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------

class BrokerError(AssertionError):
    pass


class Broker:
    """One broker process on a fresh port with a generated config file."""

    def __init__(self, config=None, verbose=True):
        if not BROKER:
            raise unittest.SkipTest("LOOPBOT_BROKER is not set")
        if not os.access(BROKER, os.X_OK):
            raise BrokerError("LOOPBOT_BROKER=%s is not executable" % BROKER)
        self.config = dict(config or {})
        self.port = None
        self.proc = None
        self.returncode = None
        self.verbose = verbose
        self._dir = tempfile.mkdtemp(prefix="loopbot-integ-")
        self._errpath = os.path.join(self._dir, "stderr.log")
        self._err = None

    def _write_config(self):
        lines = ["listener %d %s" % (self.port, HOST), "allow_anonymous true"]
        if MOSQUITTO_MODE and os.geteuid() == 0:
            lines.append("user root")
        cfg = dict(self.config)
        if self.verbose and "log_type" not in cfg:
            cfg["log_type"] = "all"
        if "log_dest" not in cfg:
            cfg["log_dest"] = "stderr"
        for k, v in cfg.items():
            if isinstance(v, (list, tuple)):
                for item in v:
                    lines.append("%s %s" % (k, item))
            else:
                lines.append("%s %s" % (k, v))
        path = os.path.join(self._dir, "broker.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, tries=3):
        last = None
        for _ in range(tries):
            self.port = free_port()
            conf = self._write_config()
            self._err = open(self._errpath, "ab")
            # Cross builds run the broker under an emulator, e.g.
            # LOOPBOT_BROKER_WRAPPER="qemu-aarch64 -L /usr/aarch64-linux-gnu".
            import shlex
            wrapper = shlex.split(os.environ.get("LOOPBOT_BROKER_WRAPPER", ""))
            self.proc = subprocess.Popen(wrapper + [BROKER, "-c", conf],
                                         stdin=subprocess.DEVNULL,
                                         stdout=self._err, stderr=self._err,
                                         start_new_session=True)
            try:
                self._wait_ready(10.0)
                return self
            except BrokerError as e:
                last = e
                self._kill()
        raise BrokerError("broker did not start: %s\n%s" % (last, self.stderr()))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError("broker exited early with %d" % self.proc.returncode)
            try:
                s = socket.create_connection((HOST, self.port), timeout=0.5)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        raise BrokerError("broker not accepting on port %d after %.0fs" % (self.port, timeout))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        if self._err:
            self._err.close()
            self._err = None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal the broker and wait; returns its exit code (None if it had
        to be killed)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self.returncode = None
                self.proc = None
                return None
        self.returncode = self.proc.returncode
        if self._err:
            self._err.close()
            self._err = None
        self.proc = None
        return self.returncode

    def stderr(self, tail=20000):
        try:
            with open(self._errpath, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def cleanup(self):
        self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)


def finish_broker(case, broker, procs, require_exit_0=True):
    """A test's teardown: kills its helper processes and stops its broker;
    shows the broker's stderr when the test failed; raises BrokerError if
    the broker died during the test or (require_exit_0) did not exit 0
    after SIGTERM."""
    for p in procs:
        kill_proc(p)
    alive = broker.alive()
    rc = broker.stop()
    if not getattr(case._outcome, "success", True):
        sys.stderr.write("\n----- broker stderr (%s) -----\n%s\n----- end -----\n"
                         % (case.id(), broker.stderr()))
    if not alive:
        raise BrokerError("broker died during the test (exit %r)\n%s" % (rc, broker.stderr()))
    if require_exit_0 and rc != 0:
        raise BrokerError("broker exit code after SIGTERM was %r (want 0)\n%s"
                          % (rc, broker.stderr()))


class BrokerTestCase(unittest.TestCase):
    """Starts a fresh broker for every test (config from @broker_config) and
    checks on teardown that it exits 0 after SIGTERM; the broker's stderr is
    printed when a test fails."""

    BROKER_CONFIG = {}

    def setUp(self):
        self._procs = []
        cfg = dict(self.BROKER_CONFIG)
        cfg.update(getattr(getattr(self, self._testMethodName), "broker_config", {}))
        self.broker = Broker(cfg)
        self.addCleanup(self.broker.cleanup)
        self.broker.start()
        self.port = self.broker.port

    def tearDown(self):
        finish_broker(self, self.broker, self._procs)

    # ---- helpers bound to this broker ----
    def raw(self, timeout=5.0):
        c = RawClient(HOST, self.port, timeout)
        self.addCleanup(c.close)
        return c

    def sub(self, *args, **kw):
        s = Sub(self.port, *args, **kw)
        self._procs.append(s.proc)
        return s

    def pub(self, *args, **kw):
        return run_pub(self.port, *args, **kw)

    def assert_broker_works(self, version=4):
        """Another client can connect, subscribe, publish and receive."""
        assert_broker_works(self, self.port, version)


def kill_proc(p):
    if p.poll() is None:
        try:
            p.kill()
        except OSError:
            pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for f in (p.stdout, p.stderr, p.stdin):
        if f:
            try:
                f.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# mosquitto_pub / mosquitto_sub
# --------------------------------------------------------------------------

def run_pub(port, *args, timeout=10.0, check=True):
    """Run mosquitto_pub to completion; returns CompletedProcess (text)."""
    cmd = [MOSQ_PUB, "-h", HOST, "-p", str(port)] + [str(a) for a in args]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, text=True, errors="replace")
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (" ".join(cmd), r.returncode,
                                                        r.stdout, r.stderr))
    return r


def is_debug_line(line):
    return line.startswith("Client ") or line.startswith("Subscribed (mid")


class Sub:
    """A running mosquitto_sub with -d; message lines and debug lines are
    collected separately by a reader thread."""

    def __init__(self, port, *args, wait_suback=True, timeout=5.0):
        self.cmd = STDBUF + [MOSQ_SUB, "-d", "-h", HOST, "-p", str(port)] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace", bufsize=1)
        self.lines = queue.Queue()
        self.messages = []
        self.debug = []
        self.errors = []
        self._cv = threading.Condition()
        self._t1 = threading.Thread(target=self._reader, args=(self.proc.stdout, False), daemon=True)
        self._t2 = threading.Thread(target=self._reader, args=(self.proc.stderr, True), daemon=True)
        self._t1.start()
        self._t2.start()
        if wait_suback:
            # "Subscribed (mid" is printed by mosquitto_sub's on_subscribe
            # callback; a SIGINT before that can hang mosquitto_sub 2.0.11.
            if not self.wait_debug("Subscribed (mid", timeout):
                out = self.describe()
                kill_proc(self.proc)
                raise AssertionError("mosquitto_sub got no SUBACK within %.0fs: %s" % (timeout, out))

    def _reader(self, f, is_err):
        try:
            for line in f:
                line = line.rstrip("\n")
                with self._cv:
                    if is_err:
                        self.errors.append(line)
                    elif is_debug_line(line):
                        self.debug.append(line)
                    else:
                        self.messages.append(line)
                    self._cv.notify_all()
        except (ValueError, OSError):
            pass
        with self._cv:
            self._cv.notify_all()

    def wait_messages(self, n, timeout=5.0):
        """Wait until n message lines arrived; returns the list (maybe shorter)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.1))
            return list(self.messages)

    def wait_debug(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if any(text in d for d in self.debug):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))

    def no_more_messages(self, n, quiet=0.5):
        """True if no more than n messages arrive within `quiet` seconds."""
        return len(self.wait_messages(n + 1, quiet)) <= n

    def wait_exit(self, timeout=5.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGINT, timeout=5.0):
        """Signal and wait; returns the exit code, or None if it had to be
        killed. A SIGINT that was not acted on within 2 s is sent again."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(min(2.0, timeout) if sig == signal.SIGINT else timeout)
        if rc is None and sig == signal.SIGINT and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.wait_exit(timeout)
        if rc is None:
            kill_proc(self.proc)
        self._t1.join(2)
        self._t2.join(2)
        return rc

    def describe(self):
        with self._cv:
            return "cmd=%s rc=%s messages=%r debug=%r stderr=%r" % (
                " ".join(self.cmd), self.proc.poll(), self.messages, self.debug, self.errors)


# --------------------------------------------------------------------------
# Raw MQTT packets
# --------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = \
    8, 9, 10, 11, 12, 13, 14, 15
PACKET_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
                6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK",
                10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
                14: "DISCONNECT", 15: "AUTH"}

# v5 property ids -> value type
P_BYTE, P_U16, P_U32, P_VARINT, P_STR, P_BIN, P_PAIR = range(7)
PROPS = {
    0x01: ("payload_format", P_BYTE), 0x02: ("message_expiry", P_U32),
    0x03: ("content_type", P_STR), 0x08: ("response_topic", P_STR),
    0x09: ("correlation_data", P_BIN), 0x0B: ("subscription_id", P_VARINT),
    0x11: ("session_expiry", P_U32), 0x12: ("assigned_client_id", P_STR),
    0x13: ("server_keep_alive", P_U16), 0x15: ("auth_method", P_STR),
    0x16: ("auth_data", P_BIN), 0x17: ("request_problem_info", P_BYTE),
    0x18: ("will_delay", P_U32), 0x19: ("request_response_info", P_BYTE),
    0x1A: ("response_info", P_STR), 0x1C: ("server_reference", P_STR),
    0x1F: ("reason_string", P_STR), 0x21: ("receive_maximum", P_U16),
    0x22: ("topic_alias_maximum", P_U16), 0x23: ("topic_alias", P_U16),
    0x24: ("maximum_qos", P_BYTE), 0x25: ("retain_available", P_BYTE),
    0x26: ("user_property", P_PAIR), 0x27: ("maximum_packet_size", P_U32),
    0x28: ("wildcard_sub_available", P_BYTE), 0x29: ("sub_id_available", P_BYTE),
    0x2A: ("shared_sub_available", P_BYTE),
}
PROP_IDS = {name: (pid, t) for pid, (name, t) in PROPS.items()}


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def decode_varint(buf, pos=0):
    mult, val = 1, 0
    for i in range(4):
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos
        mult *= 128
    raise ValueError("varint too long")


def mstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack("!H", len(s)) + s


def props(items=()):
    """Encode v5 properties; items is a list of (name_or_id, value). Raw bytes
    may be given as ("raw", b"...") to build malformed property blocks."""
    body = bytearray()
    for name, value in items:
        if name == "raw":
            body += value
            continue
        pid, t = (name, PROPS[name][1]) if isinstance(name, int) else PROP_IDS[name]
        body.append(pid)
        if t == P_BYTE:
            body.append(value)
        elif t == P_U16:
            body += struct.pack("!H", value)
        elif t == P_U32:
            body += struct.pack("!I", value)
        elif t == P_VARINT:
            body += varint(value)
        elif t in (P_STR, P_BIN):
            body += mstr(value)
        elif t == P_PAIR:
            body += mstr(value[0]) + mstr(value[1])
    return varint(len(body)) + bytes(body)


def _prop_items(buf, pos):
    """The property block at pos: ([(name, type, value)] in wire order, end).
    Strings and binary data as bytes, a user property as (bytes, bytes)."""
    n, pos = decode_varint(buf, pos)
    end = pos + n
    items = []
    while pos < end:
        pid = buf[pos]
        pos += 1
        name, t = PROPS.get(pid, ("0x%02x" % pid, None))
        if t == P_BYTE:
            v = buf[pos]; pos += 1
        elif t == P_U16:
            v = struct.unpack_from("!H", buf, pos)[0]; pos += 2
        elif t == P_U32:
            v = struct.unpack_from("!I", buf, pos)[0]; pos += 4
        elif t == P_VARINT:
            v, pos = decode_varint(buf, pos)
        elif t in (P_STR, P_BIN):
            ln = struct.unpack_from("!H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + ln]); pos += 2 + ln
        elif t == P_PAIR:
            l1 = struct.unpack_from("!H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + l1]); pos += 2 + l1
            l2 = struct.unpack_from("!H", buf, pos)[0]
            v = (k, bytes(buf[pos + 2:pos + 2 + l2])); pos += 2 + l2
        else:
            raise ValueError("unknown property 0x%02x" % pid)
        items.append((name, t, v))
    return items, end


def parse_props(buf, pos=0):
    """Returns (dict name->value (user_property -> list), new pos)."""
    items, end = _prop_items(buf, pos)
    out = {}
    for name, t, v in items:
        if t == P_STR:
            v = v.decode("utf-8", "replace")
        elif t == P_PAIR:
            out.setdefault(name, []).append(tuple(x.decode("utf-8", "replace") for x in v))
            continue
        out[name] = v
    return out, end


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(len(body)) + bytes(body)


def connect_packet(client_id="", version=4, keepalive=60, clean=True,
                   will=None, username=None, password=None, properties=(),
                   proto_name=None, reserved=False, raw_flags=None):
    """will = dict(topic, payload, qos=0, retain=False, properties=())."""
    if proto_name is None:
        proto_name = "MQIsdp" if version == 3 else "MQTT"
    flags = 0
    if clean:
        flags |= 0x02
    if will:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if reserved:
        flags |= 0x01
    if raw_flags is not None:
        flags = raw_flags
    vh = mstr(proto_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        vh += props(properties)
    pl = mstr(client_id)
    if will:
        if version == 5:
            pl += props(will.get("properties", ()))
        pl += mstr(will["topic"]) + mstr(will.get("payload", b""))
    if username is not None:
        pl += mstr(username)
    if password is not None:
        pl += mstr(password)
    return packet(CONNECT, 0, vh + pl)


def publish_packet(topic, payload=b"", qos=0, mid=1, retain=False, dup=False,
                   version=4, properties=(), raw_props=None):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    vh = mstr(topic)
    if qos:
        vh += struct.pack("!H", mid)
    if version == 5:
        vh += raw_props if raw_props is not None else props(properties)
    return packet(PUBLISH, flags, vh + payload)


def subscribe_packet(mid, filters, version=4, properties=(), flags=2):
    """filters: list of (filter, options_byte) or filter strings (QoS 0)."""
    body = struct.pack("!H", mid)
    if version == 5:
        body += props(properties)
    for f in filters:
        if isinstance(f, str):
            f = (f, 0)
        body += mstr(f[0]) + bytes([f[1]])
    return packet(SUBSCRIBE, flags, body)


def ack_packet(ptype, mid, version=4, reason=None):
    flags = 2 if ptype == PUBREL else 0
    body = struct.pack("!H", mid)
    if version == 5 and reason is not None:
        body += bytes([reason])
    return packet(ptype, flags, body)


def disconnect_packet(version=4, reason=None):
    if version == 5 and reason is not None:
        return packet(DISCONNECT, 0, bytes([reason, 0]))
    return packet(DISCONNECT, 0, b"")


def pingreq_packet():
    return packet(PINGREQ, 0, b"")


class Closed(Exception):
    pass


class Packet:
    def __init__(self, ptype, flags, body):
        self.type, self.flags, self.body = ptype, flags, body

    def __repr__(self):
        return "<%s flags=%x body=%s>" % (PACKET_NAMES.get(self.type, self.type),
                                          self.flags, self.body[:64].hex())

    # -- decoders --
    def connack(self, version=4):
        """Returns (session_present, return/reason code, props)."""
        sp, rc = self.body[0] & 1, self.body[1]
        p = {}
        if version == 5 and len(self.body) > 2:
            p, _ = parse_props(self.body, 2)
        return sp, rc, p

    def publish(self, version=4):
        """Returns dict(topic, payload, qos, retain, dup, mid, props)."""
        qos = (self.flags >> 1) & 3
        tl = struct.unpack_from("!H", self.body, 0)[0]
        topic = bytes(self.body[2:2 + tl]).decode("utf-8", "replace")
        pos = 2 + tl
        mid = None
        if qos:
            mid = struct.unpack_from("!H", self.body, pos)[0]
            pos += 2
        p = {}
        if version == 5:
            p, pos = parse_props(self.body, pos)
        return dict(topic=topic, payload=bytes(self.body[pos:]), qos=qos,
                    retain=bool(self.flags & 1), dup=bool(self.flags & 8), mid=mid, props=p)

    def mid(self):
        return struct.unpack_from("!H", self.body, 0)[0]

    def reason(self):
        """Reason code of a v5 ack (0 if absent) / DISCONNECT (0 if absent)."""
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        return self.body[2] if len(self.body) > 2 else 0

    def suback_codes(self, version=4):
        pos = 2
        if version == 5:
            _, pos = parse_props(self.body, pos)
        return list(self.body[pos:])


class RawClient:
    """A blocking TCP socket speaking hand-built MQTT."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.version = 4
        self.stash = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """send that tolerates the peer having closed; returns False if so."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = max(0.0, deadline - time.monotonic())
        # poll, not select: tests with thousands of sockets use fds > 1024
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(left * 1000):
            raise TimeoutError
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise Closed
        self.buf += data

    def recv_packet(self, timeout=5.0):
        """Next packet; raises TimeoutError or Closed."""
        if self.stash:
            return self.stash.pop(0)
        return self._read_one(timeout)

    def _read_one(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    rl, pos = decode_varint(self.buf, 1)
                except ValueError:
                    rl = None
                if rl is not None and len(self.buf) >= pos + rl:
                    b0 = self.buf[0]
                    body = bytes(self.buf[pos:pos + rl])
                    del self.buf[:pos + rl]
                    return Packet(b0 >> 4, b0 & 0x0F, body)
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0):
        """Next packet of type ptype. PUBLISH packets that arrive first are
        kept for later recv_packet/recv_publish calls; any other packet
        type is an error."""
        for i, p in enumerate(self.stash):
            if p.type == ptype:
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        held = []
        try:
            while True:
                p = self._read_one(max(0.0, deadline - time.monotonic()))
                if p.type == ptype:
                    return p
                if p.type != PUBLISH or ptype == PUBLISH:
                    raise AssertionError("expected %s, got %r" % (PACKET_NAMES[ptype], p))
                held.append(p)
        finally:
            self.stash.extend(held)

    def wait_closed(self, timeout=2.0):
        """Wait for the peer to close. Returns (closed, packets received
        before the close)."""
        deadline = time.monotonic() + timeout
        pkts = []
        while True:
            try:
                pkts.append(self.recv_packet(max(0.0, deadline - time.monotonic())))
            except Closed:
                return True, pkts
            except TimeoutError:
                return False, pkts

    # -- conveniences --
    def connect(self, client_id="", version=4, keepalive=60, clean=True, expect_rc=0, **kw):
        self.version = version
        self.send(connect_packet(client_id, version, keepalive, clean, **kw))
        p = self.expect(CONNACK)
        sp, rc, pr = p.connack(version)
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("CONNACK rc=0x%02x, want 0x%02x" % (rc, expect_rc))
        return sp, rc, pr

    def subscribe(self, filters, qos=0, mid=1, properties=()):
        if isinstance(filters, str):
            filters = [filters]
        fl = [(f, qos) if isinstance(f, str) else f for f in filters]
        self.send(subscribe_packet(mid, fl, self.version, properties))
        p = self.expect(SUBACK)
        if p.mid() != mid:
            raise AssertionError("SUBACK mid %d, want %d" % (p.mid(), mid))
        return p.suback_codes(self.version)

    def publish(self, topic, payload=b"", qos=0, mid=1, retain=False, properties=()):
        """Publish and complete the QoS handshake; returns the final ack."""
        self.send(publish_packet(topic, payload, qos, mid, retain, version=self.version,
                                 properties=properties))
        if qos == 1:
            return self.expect(PUBACK)
        if qos == 2:
            rec = self.expect(PUBREC)
            self.send(ack_packet(PUBREL, mid))
            self.expect(PUBCOMP)
            return rec
        return None

    def recv_publish(self, timeout=5.0, ack=True):
        p = self.expect(PUBLISH, timeout)
        m = p.publish(self.version)
        if ack and m["qos"] == 1:
            self.send(ack_packet(PUBACK, m["mid"]))
        elif ack and m["qos"] == 2:
            self.send(ack_packet(PUBREC, m["mid"]))
            self.expect(PUBREL, timeout)
            self.send(ack_packet(PUBCOMP, m["mid"]))
        return m

    def disconnect(self):
        self.try_send(disconnect_packet(self.version))
        self.close()


def assert_broker_works(tc, port, version=4):
    """Fresh client pair: subscribe at QoS 1, publish QoS 0 and 1, receive both."""
    s = RawClient(HOST, port)
    p = RawClient(HOST, port)
    try:
        s.connect("health-sub-%d" % os.getpid(), version=version)
        tc.assertEqual(s.subscribe("health/#", qos=1), [1])
        p.connect("health-pub-%d" % os.getpid(), version=version)
        p.publish("health/a", b"zero", qos=0)
        p.publish("health/b", b"one", qos=1)
        got = [s.recv_publish(3.0)["payload"] for _ in range(2)]
        tc.assertEqual(sorted(got), [b"one", b"zero"])
        s.disconnect()
        p.disconnect()
    finally:
        s.close()
        p.close()


# --------------------------------------------------------------------------
# Additions for test_mqtt5.py (MQTT 5 server features)
# --------------------------------------------------------------------------

def unsubscribe_packet(mid, filters, version=4, properties=()):
    body = struct.pack("!H", mid)
    if version == 5:
        body += props(properties)
    for f in filters:
        body += mstr(f)
    return packet(UNSUBSCRIBE, 2, body)


def disconnect_packet_props(reason=0, properties=()):
    """v5 DISCONNECT with a reason code and properties."""
    return packet(DISCONNECT, 0, bytes([reason]) + props(properties))


def auth_packet(reason=0x18, properties=()):
    """v5 AUTH (0x18 Continue authentication, 0x19 Re-authenticate)."""
    return packet(AUTH, 0, bytes([reason]) + props(properties))


def parse_props_list(buf, pos=0):
    """Like parse_props, but every property as (name, value) in wire order,
    so repeated ones (Subscription Identifier, User Property) are all kept."""
    items, end = _prop_items(buf, pos)
    return [(name, v) for name, _, v in items], end


def publish_props_list(pkt):
    """All properties of a v5 PUBLISH packet, in wire order."""
    qos = (pkt.flags >> 1) & 3
    tl = struct.unpack_from("!H", pkt.body, 0)[0]
    pos = 2 + tl + (2 if qos else 0)
    return parse_props_list(pkt.body, pos)[0]


def disconnect_info(pkt):
    """(reason code, props dict) of a v5 DISCONNECT packet."""
    if not pkt.body:
        return 0, {}
    p = {}
    if len(pkt.body) > 1:
        p, _ = parse_props(pkt.body, 1)
    return pkt.body[0], p


def read_until_closed(client, timeout=3.0):
    """Reads packets until the peer closes (or timeout). Returns (closed,
    packets, the first DISCONNECT or None)."""
    closed, pkts = client.wait_closed(timeout)  # stashed packets come first
    disc = next((p for p in pkts if p.type == DISCONNECT), None)
    return closed, pkts, disc


# --------------------------------------------------------------------------
# Persistence: brokers that share one persistence_location across restarts
# --------------------------------------------------------------------------

def persistent_broker_config(store_dir, **extra):
    """Config keys for a broker whose store lives in store_dir."""
    cfg = {"persistence": "true", "persistence_location": store_dir}
    cfg.update(extra)
    return cfg


class PersistentBrokerTestCase(unittest.TestCase):
    """Each test gets a temporary persistence_location; self.start_broker()
    starts a broker on it (a new process and port each time, the same
    store), self.stop_broker(sig) stops the current one: SIGKILL to
    simulate a crash, SIGTERM for a graceful stop (which must exit 0)."""

    BROKER_CONFIG = {}

    def setUp(self):
        self._procs = []
        self.store_dir = tempfile.mkdtemp(prefix="loopbot-store-")
        self.addCleanup(shutil.rmtree, self.store_dir, True)
        self.broker = None
        self.brokers = []

    def start_broker(self, **extra):
        cfg = persistent_broker_config(self.store_dir, **self.BROKER_CONFIG)
        cfg.update(extra)
        b = Broker(cfg)
        self.addCleanup(b.cleanup)
        self.brokers.append(b)
        b.start()
        self.broker = b
        self.port = b.port
        return b

    def stop_broker(self, sig=signal.SIGTERM):
        b, self.broker = self.broker, None
        rc = b.stop(sig)
        if sig == signal.SIGTERM and rc != 0:
            raise BrokerError("broker exit code after SIGTERM was %r (want 0)\n%s"
                              % (rc, b.stderr()))
        return rc

    def tearDown(self):
        for p in self._procs:
            kill_proc(p)
        failed = not getattr(self._outcome, "success", True)
        if failed:
            for b in self.brokers:
                sys.stderr.write("\n----- broker stderr (%s) -----\n%s\n----- end -----\n"
                                 % (self.id(), b.stderr()))
        if self.broker is not None:
            alive = self.broker.alive()
            rc = self.broker.stop()
            if not alive:
                raise BrokerError("broker died during the test (exit %r)\n%s"
                                  % (rc, self.broker.stderr()))
            if rc != 0:
                raise BrokerError("broker exit code after SIGTERM was %r (want 0)\n%s"
                                  % (rc, self.broker.stderr()))

    def sub(self, *args, **kw):
        s = Sub(self.port, *args, **kw)
        self._procs.append(s.proc)
        return s

    def pub(self, *args, **kw):
        return run_pub(self.port, *args, **kw)

    def pub_lines(self, lines, *args, timeout=20.0):
        """mosquitto_pub -l: one message per line of stdin, one connection;
        returns once every message is acknowledged (exit code 0)."""
        cmd = [MOSQ_PUB, "-h", HOST, "-p", str(self.port), "-l"] + [str(a) for a in args]
        r = subprocess.run(cmd, input="".join(l + "\n" for l in lines), capture_output=True,
                           timeout=timeout, text=True, errors="replace")
        if r.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (" ".join(cmd), r.returncode,
                                                            r.stdout, r.stderr))
        return r

    def raw(self, timeout=5.0):
        c = RawClient(HOST, self.port, timeout)
        self.addCleanup(c.close)
        return c
