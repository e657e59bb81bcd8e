"""systemd readiness (Type=notify, packaging/loopbot.service): the broker
sends READY=1 on $NOTIFY_SOCKET once it accepts connections and STOPPING=1
when SIGTERM starts the shutdown, without libsystemd
(platform/linux/notify.c). A unix datagram socket stands in for systemd,
as a file path and as an abstract name ("@...")."""

import os
import signal
import socket
import tempfile
import time
import unittest

from harness import MOSQUITTO_MODE, Broker, assert_broker_works, loopbot_only


class Notify(unittest.TestCase):
    def setUp(self):
        self._old = os.environ.get("NOTIFY_SOCKET")
        self.addCleanup(self._restore_env)

    def _restore_env(self):
        if self._old is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = self._old

    def listener(self, abstract):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = "loopbot-notify-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            s.bind("\0" + name)
            env = "@" + name
        else:
            d = tempfile.mkdtemp(prefix="loopbot-notify-")
            path = os.path.join(d, "notify.sock")
            s.bind(path)
            self.addCleanup(lambda: (os.unlink(path), os.rmdir(d)))
            env = path
        s.settimeout(10.0)
        return s, env

    def start(self, notify_socket):
        if notify_socket is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = notify_socket
        b = Broker()
        self.addCleanup(b.cleanup)
        b.start()
        return b

    def recv_fields(self, s):
        """One datagram as a dict of its KEY=VALUE lines."""
        data = s.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if "=" in line)

    def check_ready_then_stopping(self, abstract):
        s, env = self.listener(abstract)
        b = self.start(env)
        msg = self.recv_fields(s)
        self.assertEqual(msg.get("READY"), "1", msg)
        # READY means it serves: a client can pub/sub right away.
        assert_broker_works(self, b.port)
        if MOSQUITTO_MODE:
            self.assertEqual(b.stop(), 0)
            return
        b.proc.send_signal(signal.SIGTERM)
        msg = self.recv_fields(s)
        self.assertEqual(msg.get("STOPPING"), "1", msg)
        # Let it finish on its own: a second SIGTERM from stop() could land
        # after the handlers are gone and kill it.
        b.proc.wait(10)
        self.assertEqual(b.stop(), 0, b.stderr())

    def test_path_socket(self):
        self.check_ready_then_stopping(abstract=False)

    def test_abstract_socket(self):
        self.check_ready_then_stopping(abstract=True)

    def test_without_notify_socket(self):
        b = self.start(None)
        assert_broker_works(self, b.port)
        self.assertEqual(b.stop(), 0, b.stderr())

    @loopbot_only("failure handling of our own sd_notify code")
    def test_unreachable_socket_is_not_fatal(self):
        # Nobody listens there (and a relative name is not a valid address):
        # the broker must serve anyway and exit cleanly.
        for env in ("/nonexistent/loopbot-notify.sock", "relative.sock"):
            b = self.start(env)
            assert_broker_works(self, b.port)
            self.assertEqual(b.stop(), 0, b.stderr())


if __name__ == "__main__":
    unittest.main()
