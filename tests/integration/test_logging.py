"""Logging never holds the loop: with its log going to a pipe nobody reads,
the broker keeps delivering at full speed, drops the lines it cannot write,
and says how many once the pipe drains."""

import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (BROKER, MOSQUITTO_MODE, HOST, PUBLISH, PUBACK, RawClient, connect_packet,
                     free_port, loopbot_only)


@loopbot_only("loopbot's non-blocking log and its drop counter")
class BlockedLog(unittest.TestCase):

    def setUp(self):
        if not BROKER:
            self.skipTest("LOOPBOT_BROKER is not set")
        self.dir = tempfile.mkdtemp(prefix="loopbot-log-")
        self.port = free_port()
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write("listener %d %s\nallow_anonymous true\nlog_dest stderr\nlog_type all\n"
                    % (self.port, HOST))
        wrapper = shlex.split(os.environ.get("LOOPBOT_BROKER_WRAPPER", ""))
        # stderr is a pipe this test does not read until the end
        self.proc = subprocess.Popen(wrapper + [BROKER, "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.addCleanup(self.kill)
        deadline = time.monotonic() + 10
        while True:
            try:
                RawClient(HOST, self.port, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.fail("broker did not start")
                time.sleep(0.05)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def test_full_pipe_does_not_slow_delivery(self):
        # Fill the pipe (64 KiB) with connection log lines.
        for i in range(400):
            c = RawClient(HOST, self.port)
            c.connect("filler%03d-with-a-long-client-id-to-fill-the-log-pipe" % i)
            c.close()
        sub = RawClient(HOST, self.port)
        sub.connect("log-sub")
        sub.subscribe("log/t", qos=1)
        pub = RawClient(HOST, self.port)
        pub.connect("log-pub")
        t0 = time.monotonic()
        n = 500
        for i in range(n):
            pub.publish("log/t", b"m%d" % i, qos=1, mid=i % 65535 + 1)
            p = sub.expect(PUBLISH, timeout=5).publish(4)
            self.assertEqual(p["payload"], b"m%d" % i)
            sub.send(bytes([PUBACK << 4, 2, p["mid"] >> 8, p["mid"] & 0xFF]))
        took = time.monotonic() - t0
        self.assertLess(took, 10.0, "%d QoS 1 round trips took %.1f s with a blocked log"
                        % (n, took))
        self.assertIsNone(self.proc.poll(), "the broker died with its log blocked")

        # Drain the pipe; the next line that gets through reports the drops.
        out = bytearray()
        reader = threading.Thread(target=lambda: out.extend(self.proc.stderr.read()),
                                  daemon=True)
        reader.start()
        time.sleep(0.3)
        RawClient(HOST, self.port).connect("after-drain")
        time.sleep(0.3)
        os.kill(self.proc.pid, signal.SIGTERM)
        self.assertEqual(self.proc.wait(10), 0)
        reader.join(5)
        text = out.decode("utf-8", "replace")
        self.assertRegex(text, r"\d+ log lines dropped")



from harness import BrokerTestCase, broker_config, publish_packet  # noqa: E402


@loopbot_only("loopbot rate-limits per-client warnings")
class PerClientWarnings(BrokerTestCase):

    @broker_config(message_size_limit=10, log_type="notice")
    def test_repeated_mistake_logged_once(self):
        c = self.raw()
        c.connect("noisy")
        for i in range(50):
            c.send(publish_packet("t", b"x" * 100, 1, mid=i + 1))
            c.expect(PUBACK, timeout=3)
        time.sleep(0.3)  # lines are written as they happen
        lines = [l for l in self.broker.stderr().splitlines() if "Dropped too large" in l]
        self.assertEqual(len(lines), 1, lines)


if __name__ == "__main__":
    unittest.main()
