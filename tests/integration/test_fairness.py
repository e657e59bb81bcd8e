"""One loop, many clients: a client that never reads, one that floods, and
ten thousand connections must not stall the others; the operator endpoints
answer and their figures move with the traffic."""

import os
import resource
import signal
import selectors
import socket
import threading
import time
import unittest
import urllib.request

from harness import (MOSQUITTO_MODE, HOST, BrokerTestCase, broker_config, loopbot_only,
                     PUBLISH, PUBACK, connect_packet, publish_packet, subscribe_packet,
                     free_port, RawClient)


def broker_rss_kib(broker):
    with open("/proc/%d/status" % broker.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _split_frame(buf):
    """(packet type, body, rest) for the first whole MQTT packet, or None."""
    if len(buf) < 2:
        return None
    n, mult, i = 0, 1, 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        n += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            break
    if len(buf) < i + n:
        return None
    return buf[0] >> 4, buf[i:i + n], buf[i + n:]


class Reader(threading.Thread):
    """A subscriber that reads everything on its own thread."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.payloads = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                p = self.c.recv_packet(0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            if p.type == PUBLISH:
                self.payloads.append(p.publish(self.c.version)["payload"])


class Fairness(BrokerTestCase):

    def quiet_raw(self, client_id, rcvbuf=None, version=4):
        c = self.raw()
        if rcvbuf:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.connect(client_id, version=version)
        return c

    def test_non_reader_does_not_stall_others(self):
        stuck = self.quiet_raw("stuck", rcvbuf=4096)
        stuck.subscribe("flood/#", qos=0)
        good = self.quiet_raw("good")
        good.subscribe("flood/#", qos=0)
        reader = Reader(good)
        reader.start()
        pub = self.quiet_raw("pub")
        payload = b"p" * 1000
        n = 3000  # 3 MB: far more than the stuck client's buffers hold
        for i in range(n):
            pub.send(publish_packet("flood/x", b"%06d" % i + payload, 0))
        deadline = time.monotonic() + 20
        while len(reader.payloads) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.stop = True
        self.assertEqual(len(reader.payloads), n, "the reading subscriber lost messages")
        self.assertEqual([int(p[:6]) for p in reader.payloads], list(range(n)))
        if not MOSQUITTO_MODE:
            # what loopbot held for the stuck client is bounded (1 MiB soft limit)
            self.assertLess(broker_rss_kib(self.broker), 64 * 1024)

    @loopbot_only("mosquitto never disconnects a client that does not read")
    def test_non_reader_is_cut_off(self):
        stuck = self.quiet_raw("stuck", rcvbuf=4096)
        stuck.subscribe("flood/#", qos=0)
        pub = self.quiet_raw("pub")
        chunk = b"q" * 8000
        start = time.monotonic()
        # Keep it over its out-queue limit (after the kernel's socket buffers
        # are full too) for longer than 30 s.
        while time.monotonic() - start < 60 and "quota exceeded" not in self.broker.stderr():
            for _ in range(40):
                pub.send(publish_packet("flood/y", chunk, 0))
            time.sleep(0.5)
        # Reading now drains what the kernel holds, then finds the close.
        stuck.sock.settimeout(10)
        got = 0
        while True:
            try:
                data = stuck.sock.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                break
            if not data:
                break
            got += len(data)
        self.assertLess(time.monotonic() - start, 60, "never cut off")
        self.assertIn("quota exceeded", self.broker.stderr())

    def test_flooding_publisher_does_not_stall_a_pair(self):
        flooder = self.quiet_raw("flooder", rcvbuf=4096)
        stop = threading.Event()

        def flood():
            mid = 1
            pkt = b""
            try:
                while not stop.is_set():
                    # QoS 1 without ever reading the PUBACKs
                    pkt = publish_packet("noise/%d" % (mid % 10), b"n" * 200, 1, mid=mid)
                    flooder.sock.sendall(pkt)
                    mid = mid % 65535 + 1
            except OSError:
                pass

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            sub = self.quiet_raw("pair-sub")
            sub.subscribe("pair/t", qos=1)
            pub = self.quiet_raw("pair-pub")
            worst = 0.0
            for i in range(50):
                t0 = time.monotonic()
                pub.publish("pair/t", b"m%d" % i, qos=1, mid=i + 1)
                p = sub.expect(PUBLISH, timeout=5)
                mid = p.publish(4)["mid"]
                sub.send(bytes([PUBACK << 4, 2, mid >> 8, mid & 0xFF]))
                worst = max(worst, time.monotonic() - t0)
            self.assertLess(worst, 1.0, "a pair waited %.3f s behind the flooder" % worst)
            if not MOSQUITTO_MODE:
                # the flooder's unread acks stop us reading it: memory stays bounded
                self.assertLess(broker_rss_kib(self.broker), 64 * 1024)
        finally:
            stop.set()
            flooder.close()
            t.join(5)

    @broker_config(max_connections=-1)
    def test_ten_thousand_connections(self):
        want = 10000
        limit = raise_fd_limit(want + 200)
        if limit < want + 100:
            self.skipTest("open files limit %d is too low" % limit)
        sel = selectors.DefaultSelector()
        socks = []
        connect = connect_packet("", 4, 60, True)
        t0 = time.monotonic()
        try:
            pending = {}
            for i in range(want):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((HOST, self.broker.port))
                socks.append(s)
                sel.register(s, selectors.EVENT_WRITE, i)
                pending[i] = b""
                # Do not let the accept backlog overflow: service what is ready.
                if i % 500 == 499:
                    self._pump(sel, socks, pending, connect, budget=0.0)
            answered = self._pump(sel, socks, pending, connect, budget=90.0)
            took = time.monotonic() - t0
            self.assertEqual(answered, want, "only %d of %d got a CONNACK in %.1f s"
                             % (answered, want, took))
            self.assertLess(took, 90.0)
            # the broker still serves a normal pair with 10,000 clients connected
            self.broker_works_quickly()
        finally:
            sel.close()
            for s in socks:
                s.close()

    @broker_config(max_connections=-1)
    def test_wide_fanout_reaches_everyone_in_order(self):
        """3,000 subscribers of one topic: more than one loop callback may
        serve (loopbot slices such a fan-out over turns). Every subscriber
        gets every message, once and in order, and the broker keeps serving
        a normal pair meanwhile."""
        want = 3000
        limit = raise_fd_limit(want + 200)
        if limit < want + 100:
            self.skipTest("open files limit %d is too low" % limit)
        hello = connect_packet("", 4, 60, True) + subscribe_packet(1, [("wide/t", 1)])
        socks, bufs, seen, got = [], [], [], []
        sel = selectors.DefaultSelector()
        try:
            for i in range(want):
                s = socket.create_connection((HOST, self.broker.port))
                s.sendall(hello)
                s.setblocking(False)
                socks.append(s)
                bufs.append(b"")
                seen.append(set())
                got.append([])
                sel.register(s, selectors.EVENT_READ, i)

            def pump(done, budget):
                deadline = time.monotonic() + budget
                while not done() and time.monotonic() < deadline:
                    for key, _ in sel.select(0.2):
                        i = key.data
                        try:
                            data = socks[i].recv(65536)
                        except BlockingIOError:
                            continue
                        if not data:
                            self.fail("subscriber %d was disconnected" % i)
                        bufs[i] += data
                        while True:
                            frame = _split_frame(bufs[i])
                            if frame is None:
                                break
                            ptype, body, bufs[i] = frame
                            seen[i].add(ptype)
                            if ptype == 3:
                                tlen = int.from_bytes(body[:2], "big")
                                mid = body[2 + tlen:4 + tlen]
                                got[i].append(body[4 + tlen:])
                                socks[i].sendall(b"\x40\x02" + mid)  # PUBACK

            pump(lambda: all(0x9 in x for x in seen), 60)
            self.assertTrue(all(0x9 in x for x in seen), "not every SUBACK arrived")
            pub = self.quiet_raw("wide-pub")
            for k in range(3):
                pub.publish("wide/t", b"m%d" % k, qos=1, mid=k + 1)  # waits for PUBACK
            self.broker_works_quickly()
            pump(lambda: all(len(g) >= 3 for g in got), 60)
            bad = [i for i in range(want) if got[i] != [b"m0", b"m1", b"m2"]]
            self.assertEqual(bad, [], "%d subscribers got something else, e.g. %r"
                             % (len(bad), got[bad[0]] if bad else None))
        finally:
            sel.close()
            for s in socks:
                s.close()

    @loopbot_only("max_connection_rate is loopbot's own option")
    @broker_config(max_connection_rate=5)
    def test_connection_rate_limit(self):
        """A burst of 40 connects: about one second's worth (5) get a
        CONNACK, the rest are closed at once; a second later it accepts
        again, and clients already connected never notice."""
        time.sleep(1.1)  # the harness's own readiness probes used some tokens
        kept = self.quiet_raw("kept")
        answered, refused = 0, 0
        socks = []
        for i in range(40):
            c = RawClient(HOST, self.broker.port, timeout=2.0)
            socks.append(c)
            try:
                c.send(connect_packet("burst%d" % i, 4, 60, True))
                c.expect(0x2, timeout=2.0)  # CONNACK
                answered += 1
            except Exception:
                refused += 1
        for c in socks:
            c.close()
        self.assertLessEqual(answered, 8, "the rate limit let %d of 40 in" % answered)
        self.assertGreaterEqual(refused, 30)
        time.sleep(1.1)
        self.quiet_raw("after-a-second")
        kept.send(bytes([0xC0, 0]))  # PINGREQ on the old connection still answered
        kept.expect(0xD, timeout=2.0)

    def _pump(self, sel, socks, pending, connect, budget):
        """Sends CONNECT on writable sockets and reads CONNACKs; returns how
        many have been answered in all."""
        deadline = time.monotonic() + budget
        answered = getattr(self, "_answered", 0)
        while pending:
            left = deadline - time.monotonic()
            events = sel.select(max(0.0, min(left, 1.0)))
            if not events and left <= 0:
                break
            for key, mask in events:
                s, i = key.fileobj, key.data
                if mask & selectors.EVENT_WRITE:
                    s.send(connect)
                    sel.modify(s, selectors.EVENT_READ, i)
                    continue
                try:
                    data = s.recv(16)
                except OSError:
                    data = b""
                pending[i] += data
                if len(pending[i]) >= 4 or not data:
                    if pending[i][:1] == b"\x20" and pending[i][3:4] == b"\x00":
                        answered += 1
                    sel.unregister(s)
                    del pending[i]
        self._answered = answered
        return answered

    def broker_works_quickly(self):
        sub = self.quiet_raw("check-sub")
        sub.subscribe("check", qos=1)
        pub = self.quiet_raw("check-pub")
        t0 = time.monotonic()
        pub.publish("check", b"ok", qos=1)
        sub.expect(PUBLISH, timeout=5)
        self.assertLess(time.monotonic() - t0, 2.0)


class OperatorEndpoints(BrokerTestCase):
    """/healthz and /metrics on the HTTP listener, and $SYS."""

    def setUp(self):
        if MOSQUITTO_MODE:
            self.skipTest("loopbot-only: mosquitto has no HTTP metrics listener")
        self.http_port = free_port()
        self.BROKER_CONFIG = {"metrics_listener": "%d 127.0.0.1" % self.http_port,
                              "sys_interval": 1}
        super().setUp()

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.http_port, path)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no metric %s in:\n%s" % (name, text))

    def test_healthz(self):
        code, body = self.get("/healthz")
        self.assertEqual(code, 200)
        self.assertEqual(body.strip(), "ok")
        code, _ = self.get("/nope")
        self.assertEqual(code, 404)

    def test_metrics_move_with_traffic(self):
        code, before = self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertIn("# TYPE loopbot_messages_received_total counter", before)
        sub = self.raw()
        sub.connect("m-sub")
        sub.subscribe("m/#", qos=1)
        pub = self.raw()
        pub.connect("m-pub")
        for i in range(20):
            pub.publish("m/x", b"v", qos=1, mid=i + 1)
        _, after = self.get("/metrics")
        self.assertEqual(self.metric(after, "loopbot_clients_connected"), 2)
        self.assertGreaterEqual(self.metric(after, "loopbot_messages_received_total")
                                - self.metric(before, "loopbot_messages_received_total"), 20)
        self.assertGreater(self.metric(after, "loopbot_loop_callbacks_total"),
                           self.metric(before, "loopbot_loop_callbacks_total"))

    def test_usr_signals_keep_the_broker_running(self):
        # mosquitto users send SIGUSR1 (save now) and SIGUSR2 (debug dump);
        # their default action would kill the process.
        os.kill(self.broker.proc.pid, signal.SIGUSR1)
        os.kill(self.broker.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while "Received SIGUSR2" not in self.broker.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = self.broker.stderr()
        self.assertIn("Received SIGUSR1: persistence is written continuously", log)
        self.assertIn("Received SIGUSR2", log)
        self.assertRegex(log, r"Loop: \d+ callbacks .*longest [\d.]+ ms .* ms wall")
        self.assertTrue(self.broker.alive())
        c = self.raw()
        c.connect("after-signals")

    def wait_value(self, sub, topic, want, timeout=4.0):
        """Reads PUBLISHes on topic until its payload is want (the retained
        value from before can come first; sys_interval 1 sends changes)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            p = sub.expect(PUBLISH, timeout=max(0.1, deadline - time.monotonic())).publish(4)
            if p["topic"] == topic:
                seen.append(p["payload"])
                if p["payload"] == want:
                    return
        self.fail("%s never became %r (saw %r)" % (topic, want, seen))

    def test_sys_topics(self):
        sub = self.raw()
        sub.connect("sys-sub")
        sub.subscribe("$SYS/broker/clients/connected", qos=0)
        self.wait_value(sub, "$SYS/broker/clients/connected", b"1")
        other = self.raw()
        other.connect("sys-other")
        self.wait_value(sub, "$SYS/broker/clients/connected", b"2")
        sub.subscribe("$SYS/broker/loop/busy", qos=0, mid=2)
        p = sub.expect(PUBLISH, timeout=3).publish(4)
        self.assertEqual(p["topic"], "$SYS/broker/loop/busy")
        self.assertGreaterEqual(float(p["payload"]), 0.0)
        # clients cannot write to $SYS
        other.publish("$SYS/broker/clients/connected", b"999", qos=1)
        sub.subscribe("$SYS/broker/clients/connected", qos=0, mid=3)
        p = sub.expect(PUBLISH, timeout=3).publish(4)
        self.assertNotEqual(p["payload"], b"999")


if __name__ == "__main__":
    unittest.main()
