"""TLS listeners (mbedTLS): real clients over TLS, client certificates,
identity as username, TLS-PSK, bad clients, big payloads, many handshakes.

Every key and certificate is generated at test time with the openssl CLI
(Debian's openssl package; scripts/deps.sh test installs it) in a temporary
directory: no private key is in the tree. The broker gets its usual plain
listener (the harness's) plus one TLS listener on another port, configured
with mosquitto's key names.

The 100-handshake test and the memory test print their figures (longest
loop callback, bytes per TLS connection) to stderr; docs/tls.md quotes
them."""

import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (HOST, MOSQ_PUB, MOSQUITTO_MODE, Broker, Closed, RawClient,
                     Sub, assert_broker_works, connect_packet, finish_broker, free_port, kill_proc,
                     loopbot_only, run_pub, CONNACK, PUBLISH)

OPENSSL = shutil.which("openssl")
PKI = None  # directory with the generated files, set by setUpModule


def ossl(*args, cwd):
    r = subprocess.run([OPENSSL] + list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


def make_key(d, name, kind="ec"):
    if kind == "rsa":
        ossl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
             name + ".key", cwd=d)
    else:
        ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
             name + ".key", cwd=d)
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def make_ca(d, name, cn):
    make_key(d, name)
    ossl("req", "-x509", "-new", "-key", name + ".key", "-sha256", "-days", "2", "-subj",
         "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
         "keyUsage=critical,keyCertSign,cRLSign", "-out", name + ".crt", cwd=d)


def make_cert(d, name, ca, subj, ext, kind="ec"):
    make_key(d, name, kind)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    ossl("req", "-new", "-key", name + ".key", "-subj", subj, "-out", name + ".csr", cwd=d)
    ossl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
         "-set_serial", str(random.randrange(1, 1 << 62)), "-days", "2", "-sha256",
         "-extfile", name + ".ext", "-out", name + ".crt", cwd=d)


SERVER_EXT = ("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
CLIENT_EXT = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
CLIENT_SUBJECT = "/C=GB/O=Loopbot Test, Inc./OU=gateways/CN=device-1"
PSK_IDENTITY, PSK_KEY = "sensor-7", "00c0ffee0123456789abcdef"


def setUpModule():
    global PKI
    if not OPENSSL:
        raise unittest.SkipTest("openssl CLI not installed (scripts/deps.sh test)")
    PKI = tempfile.mkdtemp(prefix="loopbot-pki-")
    make_ca(PKI, "ca", "Loopbot Test CA")
    make_ca(PKI, "ca2", "Some Other CA")
    make_cert(PKI, "server", "ca", "/CN=localhost", SERVER_EXT)
    make_cert(PKI, "server-rsa", "ca", "/CN=localhost", SERVER_EXT, kind="rsa")
    make_cert(PKI, "client", "ca", CLIENT_SUBJECT, CLIENT_EXT)
    make_cert(PKI, "stranger", "ca2", "/CN=stranger", CLIENT_EXT)
    make_cert(PKI, "nocn", "ca", "/O=Loopbot Test/OU=no common name", CLIENT_EXT)
    with open(os.path.join(PKI, "psk.txt"), "w") as f:
        f.write("# identity:hexkey\n%s:%s\nother:1234\n" % (PSK_IDENTITY, PSK_KEY))


def tearDownModule():
    if PKI:
        shutil.rmtree(PKI, ignore_errors=True)


def pki(name):
    return os.path.join(PKI, name)


class TLSBroker(Broker):
    """The harness broker plus a TLS listener (tls: list of config lines
    that follow "listener TLS_PORT 127.0.0.1")."""

    def __init__(self, config=None, tls=(), tail=()):
        super().__init__(config)
        self.tls = list(tls)
        self.tail = list(tail)
        self.tls_port = None

    def _write_config(self):
        path = super()._write_config()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        with open(path, "a") as f:
            f.write("listener %d %s\n" % (self.tls_port, HOST))
            for line in self.tls:
                f.write(line + "\n")
            for line in self.tail:
                f.write(line + "\n")
        return path


def wait_listening(port, timeout=10.0):
    """Until a TCP connect to port succeeds (the broker may still be
    opening its later listeners), or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.02)


def expand(lines):
    return [re.sub(r"\{([^}]+)\}", lambda m: pki(m.group(1)), l) for l in lines]


def tls_lines(*extra, cert="server"):
    return expand(["certfile {%s.crt}" % cert, "keyfile {%s.key}" % cert] + list(extra))


class TLSRaw(RawClient):
    """RawClient over TLS (Python's ssl module)."""

    def __init__(self, port, timeout=5.0, cafile=None, cert=None, key=None, ctx=None,
                 server_hostname="localhost", rcvbuf=None, session=None):
        if ctx is None:
            ctx = ssl.create_default_context(cafile=cafile or pki("ca.crt"))
            if cert:
                ctx.load_cert_chain(cert, key)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((HOST, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
        self.buf = bytearray()
        self.closed = False
        self.version = 4
        self.stash = []

    def _fill(self, deadline):
        import select
        if not self.sock.pending():
            left = max(0.0, deadline - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise TimeoutError
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLError):
            data = b""
        except ssl.SSLWantReadError:
            return
        if not data:
            self.closed = True
            raise Closed
        self.buf += data


@unittest.skipIf(MOSQUITTO_MODE, "loopbot TLS listener tests (mosquitto has its own)")
class TLSCase(unittest.TestCase):
    TLS = None       # config lines for the TLS listener
    CONFIG = {}
    TAIL = ()

    def start(self, tls=None, config=None, tail=None):
        self.broker = TLSBroker(config if config is not None else self.CONFIG,
                                tls if tls is not None else (self.TLS or tls_lines()),
                                tail if tail is not None else self.TAIL)
        self.addCleanup(self.broker.cleanup)
        self.broker.start()
        self.port = self.broker.port
        self.tport = self.broker.tls_port
        if self.broker.proc.poll() is None:
            wait_listening(self.tport)  # opens after the plain one (slow under qemu)
        return self.broker

    def setUp(self):
        self._procs = []
        self.broker = None

    def tearDown(self):
        if not self.broker or self.broker.proc is None:  # none, or stopped and checked
            for p in self._procs:
                kill_proc(p)
            return
        finish_broker(self, self.broker, self._procs)

    # ---- helpers ----
    def tls_args(self, *extra):
        return ["--cafile", pki("ca.crt")] + list(extra)

    def sub(self, *args, **kw):
        s = Sub(self.tport, *args, **kw)
        self._procs.append(s.proc)
        return s

    def pub(self, *args, **kw):
        return run_pub(self.tport, *args, **kw)

    def stop_broker(self):
        """Stops the broker (exit 0 asserted) and returns its log."""
        self.assertEqual(self.broker.stop(), 0, self.broker.stderr())
        return self.broker.stderr(2000000)

    def traw(self, **kw):
        c = TLSRaw(self.tport, **kw)
        self.addCleanup(c.close)
        return c

    def log_has(self, pattern, timeout=2.0):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.broker.stderr(200000))
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def assert_plain_works(self):
        assert_broker_works(self, self.port, 4)

    def assert_tls_works(self, *args):
        s = self.sub(*self.tls_args(*args), "-t", "health/tls", "-q", "1", "-C", "1")
        self.pub(*self.tls_args(*args), "-t", "health/tls", "-q", "1", "-m", "ok")
        self.assertEqual(s.wait_messages(1, 5.0), ["ok"], s.describe())


class Basic(TLSCase):

    def test_pub_sub_v311_and_v5_all_qos(self):
        self.start()
        for v in ("mqttv311", "mqttv5"):
            for q in (0, 1, 2):
                topic = "tls/%s/%d" % (v, q)
                s = self.sub(*self.tls_args(), "-V", v, "-t", topic, "-q", q, "-C", "3")
                for i in range(3):
                    self.pub(*self.tls_args(), "-V", v, "-t", topic, "-q", q, "-m", "m%d" % i)
                self.assertEqual(s.wait_messages(3, 5.0), ["m0", "m1", "m2"], s.describe())
                self.assertEqual(s.wait_exit(5.0), 0)
        self.assertTrue(self.log_has(r"tls handshake done \(TLSv1\.2, TLS-ECDHE-ECDSA"))
        # Plain and TLS clients share the broker.
        s = Sub(self.port, "-t", "mix", "-C", "1")
        self._procs.append(s.proc)
        self.pub(*self.tls_args(), "-t", "mix", "-m", "from-tls")
        self.assertEqual(s.wait_messages(1), ["from-tls"])
        self.assert_plain_works()

    def test_wrong_ca_fails_and_others_are_fine(self):
        self.start()
        r = self.pub("--cafile", pki("ca2.crt"), "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertTrue(self.log_has(r"tls handshake failed: .*(unknown_ca|bad_certificate|"
                                     r"certificate_unknown|closed|reset)"),
                        self.broker.stderr())
        self.assert_tls_works()
        self.assert_plain_works()

    def test_plain_mqtt_to_tls_port_is_dropped(self):
        self.start()
        keep = self.traw()
        keep.connect("bystander")
        keep.subscribe("by/#", qos=1)
        c = RawClient(HOST, self.tport)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.try_send(connect_packet("plain", 4))
        closed, pkts = c.wait_closed(3.0)
        self.assertTrue(closed, "still open after %.1fs" % (time.monotonic() - t0))
        self.assertEqual(pkts, [])
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertTrue(self.log_has(r"tls handshake failed: .*not a TLS client"))
        # The TLS client next to it did not notice.
        self.pub(*self.tls_args(), "-t", "by/x", "-q", "1", "-m", "still here")
        self.assertEqual(keep.recv_publish(3.0)["payload"], b"still here")
        self.assert_plain_works()

    @loopbot_only("TLS handshake timeout")
    def test_silent_client_dropped_after_connect_timeout(self):
        self.start()
        c = RawClient(HOST, self.tport, timeout=15.0)
        self.addCleanup(c.close)
        raw = socket.create_connection((HOST, self.tport))  # stops mid-handshake
        self.addCleanup(raw.close)
        raw.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")  # a ClientHello's start
        t0 = time.monotonic()
        self.assert_tls_works()  # others are served meanwhile
        closed, _ = c.wait_closed(13.0)
        took = time.monotonic() - t0
        self.assertTrue(closed, "silent TLS client still open after %.1fs" % took)
        self.assertGreater(took, 8.0)
        raw.settimeout(3.0)
        try:
            self.assertEqual(raw.recv(100), b"")
        except (ConnectionResetError, socket.timeout) as e:
            if isinstance(e, socket.timeout):
                self.fail("half-handshake client not dropped")
        self.assertTrue(self.log_has(r"did not complete the tls handshake in 10 s"))
        self.assert_tls_works()

    def test_one_megabyte_payload_slow_reader(self):
        """1 MB messages to a TLS subscriber that does not read for a while:
        the broker's writes are partial (WANT_WRITE), and every byte must
        arrive in order."""
        self.start()
        sub = self.traw(timeout=20.0, rcvbuf=32768)
        sub.connect("big-sub")
        self.assertEqual(sub.subscribe("big", qos=1), [1])
        pub = self.traw(timeout=20.0)
        pub.connect("big-pub")
        n = 6  # 6 MB: more than the kernel's 4 MB send buffer can hide
        payloads = [os.urandom(1000000) for _ in range(n)]
        for i, p in enumerate(payloads):
            pub.publish("big", p, qos=1, mid=i + 1)
        time.sleep(1.0)  # the subscriber's socket fills; the broker is pushed back
        got = [sub.recv_publish(20.0)["payload"] for _ in range(n)]
        self.assertEqual([len(g) for g in got], [1000000] * n)
        self.assertTrue(got == payloads, "payload corrupted")
        # mosquitto_sub gets one too.
        s = self.sub(*self.tls_args(), "-t", "big2", "-C", "1")
        path = os.path.join(self.broker._dir, "big.txt")
        with open(path, "w") as f:
            f.write("x" * 1000000)
        self.pub(*self.tls_args(), "-t", "big2", "-f", path)
        msgs = s.wait_messages(1, 10.0)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(len(msgs[0]), 1000000)
        m = re.search(r"(\d+) write pushbacks", self.stop_broker())
        self.assertTrue(m and int(m.group(1)) > 0, "the test did not push the broker back")

    def test_cipher_and_version_settings(self):
        self.start(tls=tls_lines("tls_version tlsv1.2",
                                 "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:"
                                 "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"))
        c = self.traw()
        self.assertEqual(c.sock.version(), "TLSv1.2")
        self.assertIn(c.sock.cipher()[0], ("ECDHE-ECDSA-AES128-GCM-SHA256",
                                           "ECDHE-ECDSA-AES256-GCM-SHA384"))
        c.connect("cipher")
        c.close()
        # A client that insists on TLS 1.3 or on a suite we left out is refused.
        ctx = ssl.create_default_context(cafile=pki("ca.crt"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with self.assertRaises((ssl.SSLError, OSError)):
            TLSRaw(self.tport, ctx=ctx).connect("tls13")
        ctx = ssl.create_default_context(cafile=pki("ca.crt"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        with self.assertRaises((ssl.SSLError, OSError)):
            TLSRaw(self.tport, ctx=ctx).connect("chacha")
        self.assert_tls_works()

    def test_rsa_server_key(self):
        self.start(tls=tls_lines(cert="server-rsa"))
        self.assert_tls_works()
        self.assertTrue(self.log_has(r"tls handshake done \(TLSv1\.2, TLS-ECDHE-RSA"))


class ClientCertificates(TLSCase):
    TLS = None

    def test_require_certificate(self):
        self.start(tls=tls_lines("cafile {ca.crt}", "require_certificate true"))
        r = self.pub(*self.tls_args(), "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0, "connected without a client certificate")
        r = self.pub(*self.tls_args("--cert", pki("stranger.crt"), "--key", pki("stranger.key")),
                     "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0, "connected with a certificate from another CA")
        self.assertTrue(self.log_has(r"tls handshake failed: .*(verif|not correctly signed)"))
        self.assert_tls_works("--cert", pki("client.crt"), "--key", pki("client.key"))
        self.assert_plain_works()

    def test_use_identity_as_username(self):
        self.start(tls=tls_lines("cafile {ca.crt}", "require_certificate true",
                                 "use_identity_as_username true"))
        cert = ("--cert", pki("client.crt"), "--key", pki("client.key"))
        # No -u: the certificate's CN is the username.
        self.assert_tls_works(*cert)
        self.assertTrue(self.log_has(r"tls identity 'device-1' is its username"),
                        self.broker.stderr())
        # A certificate without a CN cannot name a user.
        r = self.pub(*self.tls_args("--cert", pki("nocn.crt"), "--key", pki("nocn.key")),
                     "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(self.log_has(r"has no CN"))

    def test_session_resumption_keeps_identity(self):
        """A resumed session (mbedTLS session cache) skips the key exchange
        and still carries the client certificate, so the identity is the
        same."""
        self.start(tls=tls_lines("cafile {ca.crt}", "require_certificate true",
                                 "use_identity_as_username true"))
        ctx = ssl.create_default_context(cafile=pki("ca.crt"))
        ctx.load_cert_chain(pki("client.crt"), pki("client.key"))
        a = TLSRaw(self.tport, ctx=ctx)
        a.connect("resume-1")
        session = a.sock.session
        a.disconnect()
        b = self.traw(ctx=ctx, session=session)
        self.assertTrue(b.sock.session_reused)
        b.connect("resume-2")
        b.subscribe("r/#", qos=1)
        b.publish("r/x", b"again", qos=1)
        self.assertEqual(b.recv_publish()["payload"], b"again")
        b.disconnect()
        self.stop_broker()
        log = self.broker.stderr(2000000)
        self.assertEqual(len(re.findall(r"tls identity 'device-1' is its username", log)), 2, log)

    def test_use_subject_as_username(self):
        self.start(tls=tls_lines("cafile {ca.crt}", "require_certificate true",
                                 "use_subject_as_username true"))
        cert = ("--cert", pki("client.crt"), "--key", pki("client.key"))
        self.assert_tls_works(*cert)
        want = ossl("x509", "-in", "client.crt", "-noout", "-subject", "-nameopt", "RFC2253",
                    cwd=PKI).strip()
        want = want[len("subject="):]
        self.assertEqual(want, "CN=device-1,OU=gateways,O=Loopbot Test\\, Inc.,C=GB")
        self.assertTrue(self.log_has(r"tls identity '%s' is its username" % re.escape(want)),
                        self.broker.stderr())

    def test_identity_is_the_username_for_acl(self):
        """An ACL lets only user device-1 use devices/device-1/#: a client
        with device-1's certificate and no username gets through, an
        anonymous client on the plain port does not."""
        acl = os.path.join(PKI, "acl-identity")
        with open(acl, "w") as f:
            f.write("user device-1\ntopic readwrite devices/device-1/#\n")
        self.start(tls=tls_lines("cafile {ca.crt}", "require_certificate true",
                                 "use_identity_as_username true"),
                   config={"acl_file": acl})
        cert = ("--cert", pki("client.crt"), "--key", pki("client.key"))
        s = self.sub(*self.tls_args(*cert), "-t", "devices/device-1/#", "-q", "1")
        self.pub(*self.tls_args(*cert), "-t", "devices/device-1/t", "-q", "1", "-m", "mine")
        self.assertEqual(s.wait_messages(1, 5.0), ["mine"], s.describe())
        # The ACL is in force: anonymous plain clients can neither publish
        # there nor read from there.
        anon = Sub(self.port, "-t", "devices/device-1/#")
        self._procs.append(anon.proc)
        run_pub(self.port, "-t", "devices/device-1/t", "-m", "anonymous", check=False)
        self.pub(*self.tls_args(*cert), "-t", "devices/device-1/t", "-q", "1", "-m", "mine2")
        self.assertEqual(s.wait_messages(2, 5.0), ["mine", "mine2"], s.describe())
        self.assertTrue(anon.no_more_messages(0, 1.0), anon.describe())


class PSK(TLSCase):

    def start_psk(self):
        return self.start(tls=["psk_hint loopbot"], config={"psk_file": pki("psk.txt")})

    def psk(self, ident=PSK_IDENTITY, key=PSK_KEY):
        return ["--psk-identity", ident, "--psk", key, "--tls-version", "tlsv1.2"]

    def test_psk_clients(self):
        self.start_psk()
        s = self.sub(*self.psk(), "-t", "psk/t", "-q", "1", "-C", "2")
        self.pub(*self.psk(), "-t", "psk/t", "-q", "1", "-m", "one")
        self.pub(*self.psk(), "-V", "mqttv5", "-t", "psk/t", "-q", "2", "-m", "two")
        self.assertEqual(s.wait_messages(2, 5.0), ["one", "two"], s.describe())
        self.assertTrue(self.log_has(r"tls identity '%s' is its username" % PSK_IDENTITY))
        self.assertTrue(self.log_has(r"TLS-(ECDHE-|DHE-)?PSK-WITH"))
        r = self.pub(*self.psk(key="00c0ffee0123456789abcdee"), "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0, "wrong key accepted")
        r = self.pub(*self.psk(ident="nobody"), "-t", "x", "-m", "y", check=False)
        self.assertNotEqual(r.returncode, 0, "unknown identity accepted")
        self.assertTrue(self.log_has(r"tls handshake failed"))
        self.assert_plain_works()


class StartupErrors(unittest.TestCase):
    """A bad TLS setting stops start-up with the listener's line and why."""

    def run_broker(self, tls, config=()):
        if MOSQUITTO_MODE:
            self.skipTest("loopbot messages")
        d = tempfile.mkdtemp(prefix="loopbot-tlscfg-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "b.conf")
        with open(path, "w") as f:
            f.write("\n".join(list(config) + ["listener %d 127.0.0.1" % free_port()] +
                              expand(tls)) + "\n")
        import shlex
        from harness import BROKER
        wrapper = shlex.split(os.environ.get("LOOPBOT_BROKER_WRAPPER", ""))
        r = subprocess.run(wrapper + [BROKER, "-c", path], capture_output=True, text=True,
                           timeout=10)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        return r.stdout + r.stderr

    def test_missing_certfile(self):
        out = self.run_broker(["certfile /nonexistent/server.crt", "keyfile {server.key}"])
        self.assertRegex(out, r"listener on line 1 .*certfile /nonexistent/server.crt")

    def test_key_does_not_match(self):
        out = self.run_broker(["certfile {server.crt}", "keyfile {client.key}"])
        self.assertRegex(out, r"does not match")

    def test_tls13(self):
        out = self.run_broker(["certfile {server.crt}", "keyfile {server.key}",
                               "tls_version tlsv1.3"])
        self.assertRegex(out, r"tlsv1\.3.*no TLS 1\.3")

    def test_unknown_cipher(self):
        out = self.run_broker(["certfile {server.crt}", "keyfile {server.key}",
                               "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:HIGH"])
        self.assertRegex(out, r"unknown or unsupported cipher suite 'HIGH'")

    def test_require_certificate_without_ca(self):
        out = self.run_broker(["certfile {server.crt}", "keyfile {server.key}",
                               "require_certificate true"])
        self.assertRegex(out, r"require_certificate true needs cafile")

    def test_psk_hint_without_psk_file(self):
        out = self.run_broker(["psk_hint hi"])
        self.assertRegex(out, r"no psk_file")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@unittest.skipIf(MOSQUITTO_MODE, "loopbot figures")
class Load(TLSCase):

    def test_100_concurrent_tls_clients(self):
        """100 TLS clients handshake at once, each subscribes, publishes and
        receives; the loop's longest callback stays short."""
        self.many(tls_lines(), "ECDSA P-256")

    def test_100_concurrent_tls_clients_rsa(self):
        self.many(tls_lines(cert="server-rsa"), "RSA-2048")

    def many(self, tls, what):
        self.start(tls=tls)
        n = 100
        barrier = threading.Barrier(n)
        errors, done = [], []

        def client(i):
            try:
                barrier.wait(10)
                c = TLSRaw(self.tport, timeout=20.0)
                try:
                    c.connect("many-%d" % i)
                    c.subscribe("many/%d" % i, qos=1)
                    c.publish("many/%d" % i, b"hello %d" % i, qos=1)
                    m = c.recv_publish(20.0)
                    if m["payload"] != b"hello %d" % i:
                        raise AssertionError(m)
                    c.disconnect()
                    done.append(i)
                finally:
                    c.close()
            except Exception as e:  # noqa: BLE001
                errors.append("%d: %r" % (i, e))

        ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        took = time.monotonic() - t0
        self.assertEqual(errors, [])
        self.assertEqual(len(done), n)
        log = self.stop_broker()
        m = re.search(r"longest ([\d.]+) ms \((\S+) (\S+)\)", log)
        self.assertTrue(m, log[-3000:])
        sys.stderr.write("\n[tls] 100 concurrent TLS clients (%s server key): %.2f s; "
                         "longest loop callback %s ms (%s %s)\n" % (what, took, m.group(1),
                                                                   m.group(2), m.group(3)))
        # A callback runs at most one expensive handshake step (~1.5-3 ms of
        # CPU on x86). The figure is wall time, so on a loaded shared
        # machine preemption inflates it (4-70 ms seen on a 2-core VM at
        # load 3.7): the bound only catches handshakes batched into one
        # callback (100 x ServerKeyExchange is 150-400 ms).
        self.assertLess(float(m.group(1)), 250.0)

    def measure(self, tls, n=200):
        """RSS growth per connected client, plain TCP vs TLS."""
        b = self.start()
        pid = b.proc.pid
        clients = []

        def grow(port, use_tls):
            before = rss_kib(pid)
            for i in range(n):
                c = TLSRaw(port) if use_tls else RawClient(HOST, port)
                c.connect("mem-%s-%d" % ("t" if use_tls else "p", i), keepalive=0)
                clients.append(c)
            time.sleep(0.3)
            return (rss_kib(pid) - before) * 1024.0 / n

        plain = grow(self.port, False)
        secure = grow(self.tport, True)
        for c in clients:
            c.close()
        return plain, secure

    def test_memory_per_tls_connection(self):
        self.start()
        with open("/proc/%d/maps" % self.broker.proc.pid) as f:
            if "libasan" in f.read():
                self.skipTest("RSS means nothing under AddressSanitizer")
        self.broker.stop()
        plain, secure = self.measure(tls_lines())
        sys.stderr.write("\n[tls] RSS per connected client: plain %.0f B, TLS %.0f B "
                         "(TLS adds %.1f KiB)\n" % (plain, secure, (secure - plain) / 1024.0))
        # Two 16 KiB record buffers plus the session: ~35-45 KiB.
        self.assertLess(secure - plain, 64 * 1024)
        # A TCP connection that never speaks costs no TLS buffers.
        pid = self.broker.proc.pid
        before = rss_kib(pid)
        idle = [socket.create_connection((HOST, self.tport)) for _ in range(100)]
        time.sleep(0.3)
        per_idle = (rss_kib(pid) - before) * 1024.0 / 100
        for s in idle:
            s.close()
        sys.stderr.write("[tls] RSS per silent TCP connection on the TLS port: %.0f B\n" % per_idle)
        self.assertLess(per_idle, 8 * 1024)


if __name__ == "__main__":
    unittest.main()
