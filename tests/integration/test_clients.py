"""The broker driven by mosquitto_pub / mosquitto_sub (and a raw client where
a packet-level check is needed): pub/sub at every QoS and protocol version,
retained messages, wills, persistent sessions, takeover, keep alive and the
config limits."""

import signal
import time
import unittest

from harness import (MOSQUITTO_MODE, VERSIONS, PROTO_LEVEL, HOST, BrokerTestCase,
                     broker_config, RawClient, CONNACK, DISCONNECT, PUBACK, PUBREC, PUBLISH,
                     connect_packet, publish_packet, ack_packet, PUBREL, PUBCOMP)


def v5args(version, *args):
    return list(args) if version == "mqttv5" else []


class PubSub(BrokerTestCase):
    """mosquitto_sub -t 'sensors/#' -v receives mosquitto_pub at QoS 0/1/2."""

    def check_pubsub(self, version, qos):
        sub = self.sub("-V", version, "-q", qos, "-t", "sensors/#", "-v")
        self.pub("-V", version, "-q", qos, "-t", "sensors/1/temp", "-m", "21.5")
        self.pub("-V", version, "-q", qos, "-t", "other/1/temp", "-m", "nope")
        self.pub("-V", version, "-q", qos, "-t", "sensors", "-m", "parent")
        got = sub.wait_messages(2, 5.0)
        self.assertEqual(got[:2], ["sensors/1/temp 21.5", "sensors parent"], sub.describe())
        self.assertTrue(sub.no_more_messages(2, 0.3), sub.describe())
        # The delivered QoS is min(pub, sub) = qos: check the debug line.
        self.assertTrue(sub.wait_debug("received PUBLISH (d0, q%d, r0" % qos, 1.0), sub.describe())


def _add_pubsub(version, qos):
    def t(self):
        self.check_pubsub(version, qos)
    t.__name__ = "test_pubsub_%s_qos%d" % (version, qos)
    setattr(PubSub, t.__name__, t)


for _v in VERSIONS:
    for _q in (0, 1, 2):
        _add_pubsub(_v, _q)


class Retained(BrokerTestCase):

    def check_retained(self, version):
        self.pub("-V", version, "-q", 1, "-r", "-t", "sensors/1/temp", "-m", "21.5")
        # A later subscriber gets it at once, with the retain flag set.
        sub = self.sub("-V", version, "-t", "sensors/#", "-F", "%r %t %p")
        self.assertEqual(sub.wait_messages(1, 3.0)[:1], ["1 sensors/1/temp 21.5"], sub.describe())
        # Live delivery of a retained publish to an existing subscriber has retain 0.
        self.pub("-V", version, "-r", "-t", "sensors/1/temp", "-m", "22.0")
        self.assertEqual(sub.wait_messages(2, 3.0)[1:2], ["0 sensors/1/temp 22.0"], sub.describe())
        sub.stop()
        # --retained-only: the newest retained value, then exit.
        sub2 = self.sub("-V", version, "-t", "sensors/1/temp", "-v", "--retained-only", "-W", "3")
        self.assertEqual(sub2.wait_messages(1, 3.0)[:1], ["sensors/1/temp 22.0"], sub2.describe())
        sub2.stop()
        # An empty retained payload clears it.
        self.pub("-V", version, "-r", "-n", "-t", "sensors/1/temp")
        sub3 = self.sub("-V", version, "-t", "sensors/#", "-F", "%r %t %p")
        self.assertTrue(sub3.no_more_messages(0, 0.5), "retained message not cleared: " + sub3.describe())
        self.pub("-V", version, "-t", "sensors/1/temp", "-m", "live")
        self.assertEqual(sub3.wait_messages(1, 3.0), ["0 sensors/1/temp live"], sub3.describe())

    def test_retained_mqttv31(self):
        self.check_retained("mqttv31")

    def test_retained_mqttv311(self):
        self.check_retained("mqttv311")

    def test_retained_mqttv5(self):
        self.check_retained("mqttv5")


class Will(BrokerTestCase):

    def _watcher(self, version):
        return self.sub("-V", version, "-t", "wills/#", "-v")

    def check_will_sigkill(self, version):
        watch = self._watcher(version)
        w = self.sub("-V", version, "-i", "willer", "-t", "x/y", "--will-topic", "wills/willer",
                     "--will-payload", "gone", "--will-qos", "1")
        w.stop(signal.SIGKILL)
        self.assertEqual(watch.wait_messages(1, 3.0), ["wills/willer gone"], watch.describe())

    def check_v5_sigint_sends_will(self):
        """mosquitto_sub (v5) disconnects on SIGINT with reason 0x04
        (Disconnect with Will Message): the broker must publish the will."""
        version = "mqttv5"
        watch = self._watcher(version)
        w = self.sub("-V", version, "-i", "willer", "-t", "x/y", "--will-topic", "wills/willer",
                     "--will-payload", "gone")
        self.assertEqual(w.stop(signal.SIGINT), 0, w.describe())
        self.assertTrue(w.wait_debug("sending DISCONNECT", 1.0), w.describe())
        self.assertEqual(watch.wait_messages(1, 3.0), ["wills/willer gone"], watch.describe())

    def check_raw_disconnect(self, reason, will_expected):
        watch = self.raw()
        watch.connect("watcher", version=5)
        watch.subscribe("wills/#")
        c = self.raw()
        c.connect("willer", version=5, will=dict(topic="wills/raw", payload=b"w"))
        c.send(bytes([0xE0, 1, reason]) if reason is not None else bytes([0xE0, 0]))
        closed, _ = c.wait_closed(2.0)
        self.assertTrue(closed, "broker did not close after DISCONNECT")
        if will_expected:
            m = watch.recv_publish(2.0)
            self.assertEqual((m["topic"], m["payload"]), ("wills/raw", b"w"))
        else:
            with self.assertRaises(TimeoutError):
                watch.recv_packet(0.5)
            self.assertEqual(c.closed, True)

    def test_v5_disconnect_0x04_sends_will(self):
        self.check_raw_disconnect(0x04, True)

    def test_v5_disconnect_0x00_no_will(self):
        self.check_raw_disconnect(0x00, False)

    def test_v5_disconnect_without_reason_no_will(self):
        self.check_raw_disconnect(None, False)

    def check_no_will_on_clean_exit(self, version, how):
        watch = self._watcher(version)
        args = ["-V", version, "-i", "willer", "-t", "x/y", "--will-topic", "wills/willer",
                "--will-payload", "gone"]
        if how == "count":
            w = self.sub(*(args + ["-C", "1"]))
            self.pub("-V", version, "-t", "x/y", "-m", "bye")
            self.assertEqual(w.wait_exit(3.0), 0, w.describe())
            self.assertEqual(w.wait_messages(1, 1.0), ["bye"], w.describe())
        else:
            w = self.sub(*args)
            self.assertEqual(w.stop(signal.SIGINT), 0, w.describe())
        self.assertTrue(w.wait_debug("sending DISCONNECT", 1.0), w.describe())
        # Nothing for a while, then a marker proves the watcher still works.
        self.assertTrue(watch.no_more_messages(0, 0.7), "will sent on clean exit: " + watch.describe())
        self.pub("-V", version, "-t", "wills/marker", "-m", "m")
        self.assertEqual(watch.wait_messages(1, 3.0), ["wills/marker m"], watch.describe())


def _add_will(version):
    def a(self):
        self.check_will_sigkill(version)

    def b(self):
        if version == "mqttv5":
            self.check_v5_sigint_sends_will()
        else:
            self.check_no_will_on_clean_exit(version, "sigint")

    def c(self):
        self.check_no_will_on_clean_exit(version, "count")
    a.__name__ = "test_will_on_sigkill_%s" % version
    b.__name__ = ("test_will_on_sigint_disconnect_0x04_%s" if version == "mqttv5"
                  else "test_no_will_on_sigint_%s") % version
    c.__name__ = "test_no_will_after_msg_count_%s" % version
    for f in (a, b, c):
        setattr(Will, f.__name__, f)


for _v in VERSIONS:
    _add_will(_v)


class PersistentSession(BrokerTestCase):

    def check_session(self, version, persistent):
        args = ["-V", version, "-i", "sensor-hub", "-q", "1", "-t", "t", "-v"]
        if persistent:
            args += ["-c"] + v5args(version, "-x", "3600")
        s = self.sub(*args)
        self.assertEqual(s.stop(signal.SIGINT), 0, s.describe())
        sent = []
        for i in range(6):
            qos = 1 + i % 2
            self.pub("-V", version, "-q", qos, "-t", "t", "-m", "m%d-q%d" % (i, qos))
            sent.append("t m%d-q%d" % (i, qos))
        s2 = self.sub(*args, wait_suback=False)
        if persistent:
            self.assertTrue(s2.wait_debug("received CONNACK (0)", 3.0), s2.describe())
            got = s2.wait_messages(len(sent), 5.0)
            self.assertEqual(got, sent, s2.describe())
            self.assertTrue(s2.no_more_messages(len(sent), 0.3), s2.describe())
        else:
            self.assertTrue(s2.wait_debug("received SUBACK", 3.0), s2.describe())
            self.assertTrue(s2.no_more_messages(0, 0.7), "clean session got queued messages: "
                            + s2.describe())
            self.pub("-V", version, "-q", 1, "-t", "t", "-m", "live")
            self.assertEqual(s2.wait_messages(1, 3.0), ["t live"], s2.describe())

    def test_persistent_mqttv31(self):
        self.check_session("mqttv31", True)

    def test_persistent_mqttv311(self):
        self.check_session("mqttv311", True)

    def test_persistent_mqttv5(self):
        self.check_session("mqttv5", True)

    def test_clean_session_mqttv311(self):
        self.check_session("mqttv311", False)

    def test_clean_start_mqttv5(self):
        self.check_session("mqttv5", False)

    def check_wire_order(self, version):
        """Queued QoS 1 and 2 messages go out in publish order on the wire
        (raw client, nothing acknowledged until all have arrived)."""
        keep = [("session_expiry", 3600)] if version == 5 else []
        c = self.raw()
        c.connect("wire-order", version=version, clean=False, properties=keep)
        self.assertEqual(c.subscribe("wo/t", qos=2), [2])
        c.disconnect()
        p = self.raw()
        p.connect("wire-pub", version=version)
        for i in range(6):
            p.publish("wo/t", b"m%d" % i, qos=1 + i % 2, mid=i + 1)
        c = self.raw()
        sp, _, _ = c.connect("wire-order", version=version, clean=False, properties=keep)
        self.assertEqual(sp, 1)
        got = [c.expect(PUBLISH, 3.0).publish(version) for _ in range(6)]
        self.assertEqual([(m["payload"], m["qos"]) for m in got],
                         [(b"m%d" % i, 1 + i % 2) for i in range(6)])

    def test_queued_wire_order_v311(self):
        self.check_wire_order(4)

    def test_queued_wire_order_v5(self):
        self.check_wire_order(5)

    def test_v5_clean_start_with_zero_expiry_is_not_kept(self):
        """-c with -x 0: the session ends at disconnect, nothing is queued."""
        args = ["-V", "mqttv5", "-i", "sensor-hub", "-q", "1", "-t", "t", "-v", "-c", "-x", "0"]
        s = self.sub(*args)
        s.stop(signal.SIGINT)
        self.pub("-V", "mqttv5", "-q", 1, "-t", "t", "-m", "while-away")
        s2 = self.sub(*args)
        self.assertTrue(s2.no_more_messages(0, 0.7), s2.describe())


class Takeover(BrokerTestCase):

    def check_takeover_sub(self, version):
        first = self.sub("-V", version, "-i", "same", "-t", "a", "-v")
        second = self.sub("-V", version, "-i", "same", "-t", "a", "-v")
        # The first is disconnected: mosquitto_sub either exits or reconnects
        # (it retries after 1 s), which shows as a second CONNECT.
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            if first.proc.poll() is not None:
                break
            if sum("sending CONNECT" in d for d in list(first.debug)) >= 2:
                break
            time.sleep(0.05)
        else:
            self.fail("first client not disconnected: " + first.describe())
        second.stop()

    def test_takeover_sub_mqttv31(self):
        self.check_takeover_sub("mqttv31")

    def test_takeover_sub_mqttv311(self):
        self.check_takeover_sub("mqttv311")

    def test_takeover_sub_mqttv5(self):
        self.check_takeover_sub("mqttv5")

    def check_takeover_raw(self, version):
        keep = [("session_expiry", 60)] if version == 5 else []
        a = self.raw()
        a.connect("same", version=version, clean=False, properties=keep)
        a.subscribe("tk", qos=1)
        b = self.raw()
        sp, _, _ = b.connect("same", version=version, clean=False, properties=keep)
        self.assertEqual(sp, 1, "session present must be 1 on takeover of a kept session")
        closed, pkts = a.wait_closed(2.0)
        self.assertTrue(closed, "old connection not closed")
        disc = [p for p in pkts if p.type == DISCONNECT]
        if version == 5 and not MOSQUITTO_MODE:
            # [MQTT-3.1.4-3]: DISCONNECT 0x8E (Session taken over) to the old one.
            self.assertEqual([p.reason() for p in disc], [0x8E], pkts)
        elif disc:
            self.assertEqual(disc[0].reason(), 0x8E, pkts)
        # The new connection works (it took over the session's subscription).
        b.publish("tk", b"x", qos=1, mid=7)
        m = b.recv_publish(2.0)
        self.assertEqual((m["topic"], m["payload"]), ("tk", b"x"))

    def test_takeover_raw_v311(self):
        self.check_takeover_raw(4)

    def test_takeover_raw_v5(self):
        """loopbot must send DISCONNECT 0x8E; mosquitto 2.0.11 just closes."""
        self.check_takeover_raw(5)


class KeepAlive(BrokerTestCase):
    # mosquitto 2.0.11 checks keep alive only every 5 s, so it drops a
    # keepalive-2 client between 3 and ~8 s; loopbot must do it at 3 s.
    UPPER = 9.0 if MOSQUITTO_MODE else 4.0

    def check_keepalive(self, version):
        watch = self.raw()
        watch.connect("watcher", version=4)
        watch.subscribe("wills/#")
        c = self.raw()
        c.connect("silent", version=version, keepalive=2,
                  will=dict(topic="wills/silent", payload=b"timed out"))
        t0 = time.monotonic()
        closed, pkts = c.wait_closed(2.8)
        self.assertFalse(closed, "dropped after %.2fs, before 1.5 x keep alive"
                         % (time.monotonic() - t0))
        closed, pkts = c.wait_closed(self.UPPER - 2.8)
        dt = time.monotonic() - t0
        self.assertTrue(closed, "not dropped within %.1fs" % self.UPPER)
        for p in pkts:
            self.assertEqual(p.type, DISCONNECT, pkts)
            self.assertEqual(p.reason(), 0x8D, pkts)  # Keep alive timeout
        m = watch.recv_publish(2.0)
        self.assertEqual((m["topic"], m["payload"]), ("wills/silent", b"timed out"))
        self.assertGreaterEqual(dt, 2.8)

    def test_keepalive_drop_and_will_v311(self):
        self.check_keepalive(4)

    def test_keepalive_drop_and_will_v5(self):
        self.check_keepalive(5)

    def test_pingreq_keeps_connection_alive(self):
        c = self.raw()
        c.connect("pinger", version=4, keepalive=1)
        for _ in range(4):  # 4 s with keepalive 1: would be dropped at 1.5 s
            time.sleep(0.6)
            c.send(bytes([0xC0, 0]))
            p = c.recv_packet(1.0)
            self.assertEqual(p.type, 13)  # PINGRESP


class MaxKeepalive(BrokerTestCase):

    @broker_config(max_keepalive=10)
    def test_v5_server_keep_alive_lowered(self):
        c = self.raw()
        _, rc, props = c.connect("ka", version=5, keepalive=60)
        self.assertEqual(props.get("server_keep_alive"), 10, props)

    @broker_config(max_keepalive=10)
    def test_v5_keepalive_zero_gets_server_keep_alive(self):
        c = self.raw()
        _, rc, props = c.connect("ka0", version=5, keepalive=0)
        self.assertEqual(props.get("server_keep_alive"), 10, props)

    @broker_config(max_keepalive=10)
    def test_v5_keepalive_below_max_kept(self):
        c = self.raw()
        _, rc, props = c.connect("ka5", version=5, keepalive=5)
        self.assertIn(props.get("server_keep_alive", 5), (5,), props)

    @broker_config(max_keepalive=10)
    def test_v311_keepalive_above_max_accepted(self):
        """mosquitto 2.0.11 accepts a v3.1.1 keepalive above max_keepalive
        (its man page: max_keepalive "only applies to MQTT v5 clients")."""
        c = self.raw()
        _, rc, _ = c.connect("ka311", version=4, keepalive=60)
        self.assertEqual(rc, 0)


class MessageSizeLimit(BrokerTestCase):
    LIMIT = 1000

    def check_limit_clients(self, version):
        sub = self.sub("-V", version, "-q", 1, "-t", "big/#", "-F", "%t %l")
        r = self.pub("-V", version, "-q", 1, "-t", "big/over", "-m", "x" * (self.LIMIT + 1),
                     check=False)
        self.pub("-V", version, "-q", 1, "-t", "big/at", "-m", "y" * self.LIMIT)
        self.assertEqual(sub.wait_messages(1, 3.0), ["big/at %d" % self.LIMIT], sub.describe())
        self.assertTrue(sub.no_more_messages(1, 0.3), sub.describe())

    @broker_config(message_size_limit=LIMIT)
    def test_over_limit_not_delivered_mqttv31(self):
        self.check_limit_clients("mqttv31")

    @broker_config(message_size_limit=LIMIT)
    def test_over_limit_not_delivered_mqttv311(self):
        self.check_limit_clients("mqttv311")

    @broker_config(message_size_limit=LIMIT)
    def test_over_limit_not_delivered_mqttv5(self):
        self.check_limit_clients("mqttv5")

    def check_limit_raw(self, version):
        s = self.raw()
        s.connect("s", version=version)
        s.subscribe("big/#", qos=1)
        c = self.raw()
        c.connect("c", version=version)
        over = b"o" * (self.LIMIT + 1)
        # QoS 0: dropped silently.
        c.send(publish_packet("big/0", over, 0, version=version))
        # QoS 1: acknowledged (v5 with a failure reason code), not delivered.
        c.send(publish_packet("big/1", over, 1, mid=11, version=version))
        ack = c.expect(PUBACK, 2.0)
        self.assertEqual(ack.mid(), 11)
        # QoS 2: PUBREC (v5: failure reason), not delivered.
        c.send(publish_packet("big/2", over, 2, mid=12, version=version))
        rec = c.expect(PUBREC, 2.0)
        self.assertEqual(rec.mid(), 12)
        if version == 5:
            # mosquitto 2.0.11 uses 0x95 (Packet too large).
            want = {0x95} if MOSQUITTO_MODE else {0x95, 0x97}
            self.assertIn(ack.reason(), want, ack)
            self.assertIn(rec.reason(), want, rec)
        else:
            self.assertEqual(len(ack.body), 2)
        # The connection stays up and a payload at the limit goes through.
        c.publish("big/ok", b"k" * self.LIMIT, qos=1, mid=13)
        m = s.recv_publish(2.0)
        self.assertEqual((m["topic"], len(m["payload"])), ("big/ok", self.LIMIT))
        with self.assertRaises(TimeoutError):
            s.recv_packet(0.3)

    @broker_config(message_size_limit=LIMIT)
    def test_over_limit_acks_v311(self):
        self.check_limit_raw(4)

    @broker_config(message_size_limit=LIMIT)
    def test_over_limit_acks_v5(self):
        self.check_limit_raw(5)


class MaxConnections(BrokerTestCase):
    # mosquitto 2.0.11 miscounts: every connection that has closed (here the
    # harness's readiness probe) lets one more in (fixed in 2.0.12).
    EXTRA = 1 if MOSQUITTO_MODE else 0

    def _open(self, cid, version=4):
        c = self.raw()
        c.try_send(connect_packet(cid, version=version))
        try:
            p = c.recv_packet(2.0)
        except Exception as e:  # Closed / Timeout
            return c, type(e).__name__
        if p.type == CONNACK and p.connack(version)[1] == 0:
            return c, "ok"
        return c, "refused %r" % p

    @broker_config(max_connections=5)
    def test_sixth_connection_refused(self):
        n = 5 + self.EXTRA
        conns = []
        for i in range(n):
            c, st = self._open("mc%d" % i, version=4 if i % 2 else 5)
            self.assertEqual(st, "ok", "connection %d" % (i + 1))
            conns.append(c)
        for version in (4, 5):
            c, st = self._open("mc-over-%d" % version, version)
            self.assertNotEqual(st, "ok", "connection over max_connections accepted (v%d)" % version)
            if st != "Closed":
                closed, pkts = c.wait_closed(2.0)
                self.assertTrue(closed, "refused connection left open: %s" % st)
                self.assertTrue(st.startswith("refused <CONNACK"), st)
        # The first ones keep working.
        s, p = conns[0], conns[1]
        s.version, p.version = 5, 4
        s.subscribe("mc/t", qos=1)
        p.publish("mc/t", b"still here", qos=1, mid=3)
        self.assertEqual(s.recv_publish(2.0)["payload"], b"still here")
        # Closing one makes room for one more.
        conns[2].disconnect()
        deadline = time.monotonic() + 3.0
        while True:
            c, st = self._open("mc-after", 4)
            if st == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(st, "ok")


if __name__ == "__main__":
    unittest.main()
