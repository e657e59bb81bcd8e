"""Persistence (docs/persistence.md): what was acknowledged survives a
kill -9; retained messages and subscriptions survive a restart; a corrupt
store is set aside; message expiry counts the downtime."""

import glob
import os
import signal
import time
import unittest

from harness import (PersistentBrokerTestCase, RawClient, HOST, assert_broker_works,
                     loopbot_only)


@loopbot_only("loopbot's store and its file names")
@unittest.skipIf(os.environ.get("LOOPBOT_BROKER_WRAPPER"),
                 "persistence runs a writer thread, and Debian 12's qemu-user cannot start "
                 "guest threads (docs/cross-compiling.md); tested natively")
class PersistenceTest(PersistentBrokerTestCase):

    def hub_offline(self, version="mqttv311", topic="burst/#"):
        """The persistent subscriber 'hub' subscribes at QoS 1, then leaves."""
        args = ["-c", "-i", "hub", "-q", "1", "-t", topic, "-V", version]
        if version == "mqttv5":
            args += ["-x", "3600"]
        s = self.sub(*args)
        self.assertEqual(s.stop(), 0)
        return args

    def test_kill9_loses_nothing_acknowledged(self):
        self.start_broker()
        args = self.hub_offline()
        q1 = ["q1-%03d" % i for i in range(150)]
        q2 = ["q2-%03d" % i for i in range(100)]
        # Every message acknowledged means committed by the store.
        self.pub_lines(q1, "-q", "1", "-t", "burst/one")
        self.pub_lines(q2, "-q", "2", "-t", "burst/two")
        self.stop_broker(signal.SIGKILL)
        self.start_broker()
        s = self.sub(*args, wait_suback=False)
        got = s.wait_messages(len(q1) + len(q2), timeout=15.0)
        self.assertEqual(got, q1 + q2, s.describe())
        s.stop()

    def test_inflight_resent_after_kill9(self):
        """Messages sent to the subscriber but never acknowledged by it are
        resent after a crash (the subscriber does not ack them)."""
        self.start_broker()
        c = self.raw()
        c.connect("hub2", clean=False)
        c.subscribe("inf/#", qos=1)
        p = self.raw()
        p.connect("pub2")
        for i in range(3):
            p.publish("inf/x", b"m%d" % i, qos=1)
        got = [c.recv_publish(ack=False)["payload"] for _ in range(3)]
        self.assertEqual(got, [b"m0", b"m1", b"m2"])
        self.stop_broker(signal.SIGKILL)
        c.close()
        p.close()
        self.start_broker()
        c = self.raw()
        sp, rc, _ = c.connect("hub2", clean=False)
        self.assertEqual((sp, rc), (1, 0))
        again = [c.recv_publish() for _ in range(3)]
        self.assertEqual([m["payload"] for m in again], [b"m0", b"m1", b"m2"])
        self.assertTrue(all(m["dup"] for m in again), again)
        c.disconnect()

    def test_retained_and_subscriptions_survive_restart(self):
        self.start_broker()
        self.pub("-q", "1", "-r", "-t", "keep/r", "-m", "kept")
        self.pub("-q", "1", "-r", "-t", "keep/gone", "-m", "x")
        self.pub("-q", "1", "-r", "-t", "keep/gone", "-n")  # cleared: not restored
        c = self.raw()
        c.connect("subkeeper", clean=False)
        c.subscribe("news/#", qos=1)
        c.disconnect()
        self.stop_broker(signal.SIGTERM)

        self.start_broker()
        s = self.sub("-t", "keep/#", "-C", "1", "-W", "5")
        self.assertEqual(s.wait_messages(1), ["kept"])
        self.assertTrue(s.no_more_messages(1))
        s.stop()
        # The subscription came back with the session: no SUBSCRIBE now.
        c = self.raw()
        sp, rc, _ = c.connect("subkeeper", clean=False)
        self.assertEqual((sp, rc), (1, 0))
        self.pub("-q", "1", "-t", "news/a", "-m", "fresh")
        self.assertEqual(c.recv_publish()["payload"], b"fresh")
        c.disconnect()

    def test_corrupt_store_set_aside(self):
        with open(os.path.join(self.store_dir, "loopbot.db"), "wb") as f:
            f.write(os.urandom(8192))
        b = self.start_broker()
        assert_broker_works(self, self.port)
        aside = glob.glob(os.path.join(self.store_dir, "loopbot.db.corrupt-*"))
        self.assertTrue(aside, os.listdir(self.store_dir))
        self.assertIn("moved aside", b.stderr())
        # The fresh store works across a restart.
        self.pub("-q", "1", "-r", "-t", "c/r", "-m", "after")
        self.stop_broker(signal.SIGKILL)
        self.start_broker()
        s = self.sub("-t", "c/r", "-C", "1", "-W", "5")
        self.assertEqual(s.wait_messages(1), ["after"])
        s.stop()

    def test_message_expiry_counts_downtime(self):
        self.start_broker()
        args = self.hub_offline(version="mqttv5", topic="exp/#")
        self.pub("-V", "mqttv5", "-q", "1", "-t", "exp/short", "-m", "expires",
                 "-D", "publish", "message-expiry-interval", "2")
        self.pub("-V", "mqttv5", "-q", "1", "-t", "exp/long", "-m", "stays",
                 "-D", "publish", "message-expiry-interval", "3600")
        self.stop_broker(signal.SIGTERM)
        time.sleep(3)
        self.start_broker()
        s = self.sub(*args, wait_suback=False)
        self.assertEqual(s.wait_messages(1, timeout=5.0), ["stays"], s.describe())
        self.assertTrue(s.no_more_messages(1, quiet=1.0), s.describe())
        s.stop()

    def test_delayed_will_survives_kill9(self):
        self.start_broker()
        w = self.raw()
        w.connect("willer", version=5, clean=True, properties=[("session_expiry", 60)],
                  will=dict(topic="w/t", payload=b"bye", qos=1,
                            properties=[("will_delay", 2)]))
        w.close()  # no DISCONNECT: the will waits 2 s in the session
        time.sleep(0.3)
        self.stop_broker(signal.SIGKILL)
        self.start_broker()
        s = self.raw()
        s.connect("watcher")
        s.subscribe("w/#", qos=1)
        self.assertEqual(s.recv_publish(timeout=5.0)["payload"], b"bye")
        s.disconnect()

    def test_off_by_default_writes_nothing(self):
        # persistence false (the default): no file appears.
        self.BROKER_CONFIG = {}
        self.start_broker(persistence="false")
        self.pub("-q", "1", "-r", "-t", "x", "-m", "y")
        self.assertEqual(os.listdir(self.store_dir), [])


if __name__ == "__main__":
    unittest.main()
