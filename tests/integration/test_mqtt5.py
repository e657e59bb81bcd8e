"""MQTT 5.0 server features, each against the real broker with real clients
(mosquitto_pub / mosquitto_sub -V mqttv5 with -D properties) and, where a
command-line client cannot express the case or a packet field matters, the
raw v5 client of harness.py.

Every test asserts what a broken broker would get wrong: the property that
must (or must not) be on the wire, the exact reason code of a refusal, what
is (not) delivered and when. Spec rules are cited as [MQTT-x.y.z-n]."""

import signal
import struct
import time

from harness import (MOSQUITTO_MODE, HOST, BrokerTestCase, broker_config, loopbot_only,
                     RawClient, Closed, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, SUBACK,
                     UNSUBACK, DISCONNECT, ack_packet, publish_packet, subscribe_packet,
                     unsubscribe_packet, disconnect_packet, disconnect_packet_props,
                     auth_packet, publish_props_list, disconnect_info, read_until_closed,
                     connect_packet, props)

V5 = 5
# Subscription options byte [MQTT 3.8.3.1]
NL, RAP = 0x04, 0x08


def rh(n):
    return n << 4


class Mqtt5Case(BrokerTestCase):
    """Helpers shared by the MQTT 5 tests."""

    def v5(self, client_id="", **kw):
        """A connected raw v5 client; returns (client, session present, CONNACK props)."""
        c = self.raw()
        sp, _, p = c.connect(client_id, version=V5, **kw)
        return c, sp, p

    def v5sub(self, client_id, filters, qos=1, **kw):
        c, _, _ = self.v5(client_id, **kw)
        codes = c.subscribe(filters, qos=qos)
        self.assertTrue(all(x < 0x80 for x in codes), codes)
        return c

    def assert_no_packet(self, c, quiet=0.5, what="packet"):
        try:
            p = c.recv_packet(quiet)
        except TimeoutError:
            return
        except Closed:
            self.fail("connection closed while waiting for no %s" % what)
        self.fail("unexpected %s: %r" % (what, p))

    def assert_disconnected(self, c, want, mosq="same", timeout=3.0):
        """The broker must close c. loopbot: a DISCONNECT first, with a
        reason code in `want` and a Reason String. In mosquitto mode `mosq`
        says what 2.0.11 does: "same" (as loopbot, without the reason string
        check), None (closes without DISCONNECT) or a tuple of reasons.
        Returns (reason or None, props)."""
        closed, pkts, disc = read_until_closed(c, timeout)
        self.assertTrue(closed, "broker did not close the connection; got %r" % pkts)
        if MOSQUITTO_MODE and mosq is None:
            self.assertIsNone(disc, "mosquitto sent %r" % pkts)
            return None, {}
        self.assertIsNotNone(disc, "no DISCONNECT before close, got %r" % pkts)
        reason, p = disconnect_info(disc)
        allowed = tuple(want) if not (MOSQUITTO_MODE and mosq != "same") else tuple(mosq)
        self.assertIn(reason, allowed, "DISCONNECT reason 0x%02x, want one of %s (%r)"
                      % (reason, ["0x%02x" % r for r in allowed], p))
        if not MOSQUITTO_MODE:
            self.assertTrue(p.get("reason_string"), "loopbot's DISCONNECT has no Reason String")
        return reason, p


# ---------------------------------------------------------------------------
# 1. Session Expiry Interval
# ---------------------------------------------------------------------------

class SessionExpiry(Mqtt5Case):

    def _park(self, cid, expiry, filt="se/t", disconnect=None):
        """Connect with clean start and a session expiry, subscribe QoS 1,
        leave with a normal DISCONNECT (or the given packet)."""
        p = [("session_expiry", expiry)] if expiry is not None else []
        c, sp, _ = self.v5(cid, properties=p)
        self.assertEqual(sp, 0)
        self.assertEqual(c.subscribe(filt, qos=1), [1])
        c.send(disconnect or disconnect_packet(V5))
        closed, _ = c.wait_closed(2.0)
        self.assertTrue(closed, "broker did not close after DISCONNECT")

    def _publish(self, n=2, topic="se/t"):
        p, _, _ = self.v5("se-pub")
        for i in range(n):
            p.publish(topic, b"q%d" % i, qos=1, mid=i + 1)
        return p

    def _resume(self, cid, expiry=60):
        c = self.raw()
        sp, _, _ = c.connect(cid, version=V5, clean=False,
                             properties=[("session_expiry", expiry)])
        return c, sp

    def test_expiry_absent_session_ends_at_disconnect(self):
        """No Session Expiry Interval = 0: the session ends with the
        connection [MQTT-3.1.2-23]: nothing queued, not present."""
        self._park("se-zero", None)
        self._publish()
        c, sp = self._resume("se-zero")
        self.assertEqual(sp, 0, "session present after a session with expiry 0 ended")
        self.assert_no_packet(c, 0.5, "PUBLISH for an ended session")

    def test_expiry_60_survives_and_queues(self):
        self._park("se-60", 60)
        self._publish(3)
        c, sp = self._resume("se-60")
        self.assertEqual(sp, 1, "session present must be 1 [MQTT-3.2.2-2]")
        got = [c.recv_publish(3.0)["payload"] for _ in range(3)]
        self.assertEqual(got, [b"q0", b"q1", b"q2"])
        # The subscription survived too: a live message arrives.
        p, _, _ = self.v5("se-pub2")
        p.publish("se/t", b"live", qos=1)
        self.assertEqual(c.recv_publish(3.0)["payload"], b"live")

    def test_expiry_max_never_expires(self):
        """0xFFFFFFFF means the session does not expire [MQTT-3.1.2-23]; a
        broker that stores it as a signed or 32-bit millisecond value ends it
        at the next tick."""
        self._park("se-max", 0xFFFFFFFF)
        self._publish(1)
        time.sleep(1.2)  # at least one expiry tick of the broker
        c, sp = self._resume("se-max", 0xFFFFFFFF)
        self.assertEqual(sp, 1)
        self.assertEqual(c.recv_publish(3.0)["payload"], b"q0")

    def test_disconnect_sets_expiry_zero_ends_session(self):
        """CONNECT with 60, DISCONNECT with 0: the session ends now."""
        self._park("se-dz", 60, disconnect=disconnect_packet_props(0, [("session_expiry", 0)]))
        self._publish(1)
        c, sp = self._resume("se-dz")
        self.assertEqual(sp, 0, "DISCONNECT's Session Expiry Interval 0 was ignored")
        self.assert_no_packet(c, 0.5, "PUBLISH for an ended session")

    def test_disconnect_nonzero_after_zero_is_protocol_error(self):
        """CONNECT with 0, DISCONNECT with 60: a Protocol Error; the server
        does not treat it as a valid DISCONNECT [MQTT-3.14.2-2]: DISCONNECT
        0x82, the will is published (not a normal disconnect) and the session
        is not kept."""
        watch = self.v5sub("se-watch", "wills/#")
        c, _, _ = self.v5("se-bad", will=dict(topic="wills/se-bad", payload=b"w"))
        c.send(disconnect_packet_props(0, [("session_expiry", 60)]))
        self.assert_disconnected(c, (0x82,))
        m = watch.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"]), ("wills/se-bad", b"w"),
                         "an invalid DISCONNECT must not discard the will")
        c2, sp = self._resume("se-bad")
        self.assertEqual(sp, 0, "session revived by an invalid DISCONNECT")

    def test_clean_start_discards_session(self):
        self._park("se-clean", 60)
        self._publish(1)
        c, sp, _ = self.v5("se-clean", clean=True, properties=[("session_expiry", 60)])
        self.assertEqual(sp, 0, "Clean Start 1 must give session present 0 [MQTT-3.2.2-2]")
        self.assert_no_packet(c, 0.4, "queued PUBLISH of a discarded session")
        # The subscription went with it.
        p, _, _ = self.v5("se-pub2")
        ack = p.publish("se/t", b"after", qos=1)
        self.assertEqual(ack.reason(), 0x10, "subscription survived Clean Start 1")
        self.assert_no_packet(c, 0.3, "PUBLISH on a discarded subscription")


# ---------------------------------------------------------------------------
# 2. Message Expiry Interval
# ---------------------------------------------------------------------------

class MessageExpiry(Mqtt5Case):

    def test_queued_messages_expire_and_expiry_is_reduced(self):
        """Queued for an offline session: expiry 1 is gone after 2 s; expiry
        10 is delivered with what is left (<= 8) [MQTT-3.3.2-5, -6]; one
        without expiry has no Message Expiry Interval."""
        c, _, _ = self.v5("me-sub", properties=[("session_expiry", 60)])
        c.subscribe("me/t", qos=1)
        c.disconnect()
        self.pub("-V", "mqttv5", "-q", 1, "-t", "me/t", "-m", "short",
                 "-D", "publish", "message-expiry-interval", 1)
        self.pub("-V", "mqttv5", "-q", 1, "-t", "me/t", "-m", "long",
                 "-D", "publish", "message-expiry-interval", 10)
        self.pub("-V", "mqttv5", "-q", 1, "-t", "me/t", "-m", "forever")
        t0 = time.monotonic()
        time.sleep(2.1)
        c = self.raw()
        sp, _, _ = c.connect("me-sub", version=V5, clean=False,
                             properties=[("session_expiry", 60)])
        waited = time.monotonic() - t0
        self.assertEqual(sp, 1)
        m1 = c.recv_publish(3.0)
        m2 = c.recv_publish(3.0)
        self.assertEqual([m1["payload"], m2["payload"]], [b"long", b"forever"],
                         "expired message delivered, or a live one lost")
        left = m1["props"].get("message_expiry")
        self.assertIsNotNone(left, "forwarded message lost its Message Expiry Interval")
        self.assertLessEqual(left, 10 - int(waited), "expiry not reduced by the time queued")
        self.assertGreaterEqual(left, 6)
        self.assertNotIn("message_expiry", m2["props"])
        self.assert_no_packet(c, 0.3)

    def test_retained_message_expires(self):
        """A retained message past its expiry is not sent to a new
        subscriber [MQTT-3.3.2-5]; one with time left is, with the rest."""
        self.pub("-V", "mqttv5", "-r", "-q", 1, "-t", "me/r/short", "-m", "s",
                 "-D", "publish", "message-expiry-interval", 1)
        self.pub("-V", "mqttv5", "-r", "-q", 1, "-t", "me/r/long", "-m", "l",
                 "-D", "publish", "message-expiry-interval", 30)
        time.sleep(2.1)
        c = self.v5sub("me-rsub", "me/r/#")
        m = c.recv_publish(3.0)
        self.assertEqual((m["topic"], m["retain"]), ("me/r/long", True))
        self.assertLessEqual(m["props"].get("message_expiry", 99), 28)
        self.assert_no_packet(c, 0.5, "expired retained message")


# ---------------------------------------------------------------------------
# 3. Topic aliases
# ---------------------------------------------------------------------------

class TopicAlias(Mqtt5Case):

    def test_connack_topic_alias_maximum(self):
        _, _, p = self.v5("ta-c")
        self.assertEqual(p.get("topic_alias_maximum"), 10)

    def test_client_alias_resolved_for_subscribers(self):
        """Alias 1 + topic defines it, alias 1 + empty topic uses it, alias 1
        + another topic redefines it [MQTT-3.3.2-12]; subscribers (v5 CLI and
        v3.1.1) get the full topic."""
        sub = self.sub("-V", "mqttv5", "-t", "ta/#", "-v")
        sub311 = self.sub("-V", "mqttv311", "-t", "ta/#", "-v")
        c, _, _ = self.v5("ta-pub")
        c.publish("ta/long/topic", b"one", qos=1, mid=1, properties=[("topic_alias", 1)])
        c.publish("", b"two", qos=1, mid=2, properties=[("topic_alias", 1)])
        c.publish("ta/other", b"three", qos=1, mid=3, properties=[("topic_alias", 1)])
        c.publish("", b"four", qos=0, properties=[("topic_alias", 1)])
        want = ["ta/long/topic one", "ta/long/topic two", "ta/other three", "ta/other four"]
        self.assertEqual(sub.wait_messages(4, 3.0), want, sub.describe())
        self.assertEqual(sub311.wait_messages(4, 3.0), want, sub311.describe())

    def test_retained_publish_through_alias_stores_full_topic(self):
        c, _, _ = self.v5("ta-ret")
        c.publish("ta/ret/topic", b"first", qos=1, properties=[("topic_alias", 2)])
        c.publish("", b"kept", qos=1, mid=2, retain=True, properties=[("topic_alias", 2)])
        s = self.v5sub("ta-rs", "ta/#")
        m = s.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"], m["retain"]), ("ta/ret/topic", b"kept", True))

    @broker_config(max_topic_alias=0)
    def test_max_topic_alias_zero(self):
        """max_topic_alias 0: no Topic Alias Maximum in CONNACK (= 0), and any
        alias is invalid [MQTT-3.2.2-17, 3.3.2-9]."""
        c, _, p = self.v5("ta-z")
        self.assertEqual(p.get("topic_alias_maximum", 0), 0)
        c.send(publish_packet("ta/x", b"x", qos=0, version=V5, properties=[("topic_alias", 1)]))
        self.assert_disconnected(c, (0x94,))

    def _bad(self, topic, alias, want, mosq="same"):
        c, _, _ = self.v5("ta-bad")
        p = [("topic_alias", alias)] if alias is not None else []
        c.send(publish_packet(topic, b"x", qos=0, version=V5, properties=p))
        self.assert_disconnected(c, want, mosq)
        self.assert_broker_works(V5)

    def test_alias_zero(self):
        """[MQTT-3.3.2-8]: 0x94 Topic Alias invalid (mosquitto: 0x81)."""
        self._bad("ta/x", 0, (0x94,), mosq=(0x81,))

    def test_alias_above_maximum(self):
        """Alias 11 > Topic Alias Maximum 10 [MQTT-3.3.2-9]."""
        self._bad("ta/x", 11, (0x94,))

    def test_empty_topic_without_alias(self):
        """An empty topic needs an alias: Protocol Error [MQTT-3.3.2-1]."""
        self._bad("", None, (0x82,))

    def test_unknown_alias(self):
        """An alias never set, used with an empty topic [MQTT-3.3.2-12]."""
        self._bad("", 3, (0x94,), mosq=(0x82,))

    def _alias_sub(self, tam):
        p = [("topic_alias_maximum", tam)] if tam is not None else []
        c, _, _ = self.v5("ta-out", properties=p)
        c.subscribe("ta/#", qos=1)
        pub, _, _ = self.v5("ta-pub")
        for i, t in enumerate(["ta/x/long/topic", "ta/x/long/topic", "ta/y", "ta/x/long/topic"]):
            pub.publish(t, b"%d" % i, qos=1, mid=i + 1)
        pkts = []
        for _ in range(4):
            pk = c.expect(PUBLISH, 3.0)
            m = pk.publish(V5)
            c.send(ack_packet(PUBACK, m["mid"]))
            pkts.append(m)
        return pkts

    @loopbot_only("mosquitto 2.0.11 never sends topic aliases to clients (allowed: MAY)")
    def test_server_uses_aliases_up_to_client_maximum(self):
        """The client allows 5: the first PUBLISH on a topic carries topic +
        alias, later ones the alias alone [MQTT-3.3.2-12], aliases <= 5."""
        m = self._alias_sub(5)
        a = m[0]["props"].get("topic_alias")
        self.assertIsNotNone(a, "no alias although the client allowed 5")
        self.assertTrue(1 <= a <= 5)
        self.assertEqual(m[0]["topic"], "ta/x/long/topic")
        self.assertEqual((m[1]["topic"], m[1]["props"].get("topic_alias")), ("", a))
        b = m[2]["props"].get("topic_alias")
        self.assertEqual(m[2]["topic"], "ta/y", "a new topic must be sent in full")
        if b is not None:
            self.assertTrue(1 <= b <= 5 and b != a, (a, b))
        self.assertEqual((m[3]["topic"], m[3]["props"].get("topic_alias")), ("", a))
        self.assertEqual([x["payload"] for x in m], [b"0", b"1", b"2", b"3"])

    def test_no_alias_without_client_maximum(self):
        """No Topic Alias Maximum from the client: never an alias [MQTT-3.3.2-10]."""
        for m in self._alias_sub(None):
            self.assertNotIn("topic_alias", m["props"])
            self.assertTrue(m["topic"].startswith("ta/"))

    def test_server_aliases_resolve_with_small_maximum(self):
        """Topic Alias Maximum 2 and 4 topics interleaved: whatever aliases the
        server chooses, never one above 2, never an empty topic without a
        known alias, and every PUBLISH resolves to the topic published."""
        c, _, _ = self.v5("ta-small", properties=[("topic_alias_maximum", 2)])
        c.subscribe("tb/#", qos=0)
        pub, _, _ = self.v5("ta-pub")
        topics = ["tb/a", "tb/b", "tb/c", "tb/a", "tb/d", "tb/b", "tb/c", "tb/a"]
        for i, t in enumerate(topics):
            pub.publish(t, b"%d" % i, qos=1, mid=i + 1)
        table, got = {}, []
        for _ in topics:
            m = c.recv_publish(3.0)
            a = m["props"].get("topic_alias")
            if a is not None:
                self.assertTrue(1 <= a <= 2, "alias %d above the client's maximum 2" % a)
                if m["topic"]:
                    table[a] = m["topic"]
                else:
                    self.assertIn(a, table, "alias used before it was set")
            else:
                self.assertTrue(m["topic"], "empty topic without an alias")
            got.append(m["topic"] or table[a])
        self.assertEqual(got, topics)

    # No mosquitto_sub check here: libmosquitto 2.0.11 sends the Topic Alias
    # Maximum given with -D but refuses every PUBLISH with an empty topic
    # ("protocol error"), so it cannot take the aliases it asked for.


# ---------------------------------------------------------------------------
# 4. Flow control
# ---------------------------------------------------------------------------

class FlowControl(Mqtt5Case):

    def test_connack_receive_maximum_default(self):
        _, _, p = self.v5("fc-c")
        self.assertEqual(p.get("receive_maximum"), 20)

    @loopbot_only("mosquitto 2.0.11 sends two more PUBLISHes after one PUBACK (3 in flight "
                  "with Receive Maximum 2)")
    def test_client_receive_maximum_respected(self):
        """Receive Maximum 2 and no acks: exactly 2 QoS 1 PUBLISHes of 5
        [MQTT-3.3.4-9]; each PUBACK lets one more go, in order."""
        c, _, _ = self.v5("fc-sub", properties=[("receive_maximum", 2)])
        c.subscribe("fc/t", qos=1)
        p, _, _ = self.v5("fc-pub")
        for i in range(5):
            p.publish("fc/t", b"m%d" % i, qos=1, mid=i + 1)
        got = [c.recv_publish(3.0, ack=False) for _ in range(2)]
        self.assert_no_packet(c, 0.5, "PUBLISH beyond Receive Maximum")
        c.send(ack_packet(PUBACK, got[0]["mid"]))
        got.append(c.recv_publish(3.0, ack=False))
        self.assert_no_packet(c, 0.3, "PUBLISH beyond Receive Maximum")
        for m in got[1:]:
            c.send(ack_packet(PUBACK, m["mid"]))
        got += [c.recv_publish(3.0) for _ in range(2)]
        self.assertEqual([m["payload"] for m in got], [b"m0", b"m1", b"m2", b"m3", b"m4"])

    @loopbot_only("mosquitto 2.0.11 answers the 4th QoS 2 PUBLISH with PUBREC 0x97 and "
                  "keeps the connection")
    @broker_config(max_inflight_messages=3)
    def test_client_exceeding_receive_maximum_disconnected(self):
        """CONNACK says Receive Maximum 3; a 4th QoS 2 PUBLISH without PUBREL
        is a violation: DISCONNECT 0x93 [MQTT-3.3.4-8]."""
        c, _, p = self.v5("fc-q2")
        self.assertEqual(p.get("receive_maximum"), 3)
        for mid in (1, 2, 3):
            c.send(publish_packet("fc/q2", b"x", qos=2, mid=mid, version=V5))
            self.assertEqual(c.expect(PUBREC, 3.0).mid(), mid)
        c.send(publish_packet("fc/q2", b"x", qos=2, mid=4, version=V5))
        self.assert_disconnected(c, (0x93,))
        self.assert_broker_works(V5)


# ---------------------------------------------------------------------------
# 5. Maximum Packet Size
# ---------------------------------------------------------------------------

class MaximumPacketSize(Mqtt5Case):

    def test_client_maximum_packet_size(self):
        """The server must not send a packet larger than the client's Maximum
        Packet Size: it drops it for that client [MQTT-3.1.2-25] and goes on."""
        cli = self.sub("-V", "mqttv5", "-q", 1, "-D", "connect", "maximum-packet-size", 100,
                       "-t", "mps/#", "-v")
        c, _, _ = self.v5("mps-raw", properties=[("maximum_packet_size", 100)])
        c.subscribe("mps/#", qos=1)
        big = "B" * 500
        self.pub("-V", "mqttv5", "-q", 1, "-t", "mps/big", "-m", big)
        self.pub("-V", "mqttv5", "-q", 0, "-t", "mps/big", "-m", big)
        self.pub("-V", "mqttv5", "-q", 1, "-t", "mps/small", "-m", "ok")
        m = c.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"]), ("mps/small", b"ok"), "oversized packet sent")
        self.assertEqual(cli.wait_messages(1, 3.0), ["mps/small ok"], cli.describe())
        self.assertTrue(cli.no_more_messages(1, 0.3), cli.describe())
        self.assert_no_packet(c, 0.2)

    @loopbot_only("mosquitto 2.0.11 keeps a QoS 1 message too large for the client in "
                  "flight forever: with Receive Maximum 1 nothing is delivered after it")
    def test_oversized_qos1_does_not_block_window(self):
        """A dropped QoS 1 message must free its slot of a Receive Maximum 1 window."""
        c, _, _ = self.v5("mps-rm1", properties=[("maximum_packet_size", 100),
                                                 ("receive_maximum", 1)])
        c.subscribe("mps/#", qos=1)
        p, _, _ = self.v5("mps-pub")
        p.publish("mps/big", b"B" * 500, qos=1)
        p.publish("mps/small", b"ok", qos=1, mid=2)
        m = c.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"]), ("mps/small", b"ok"))

    @broker_config(max_packet_size=200)
    def test_server_maximum_packet_size(self):
        """CONNACK announces 200; a 300-byte PUBLISH: DISCONNECT 0x95 [MQTT-3.2.2-15]."""
        watch = self.v5sub("mps-w", "mps/#")
        c, _, p = self.v5("mps-big")
        self.assertEqual(p.get("maximum_packet_size"), 200)
        c.send(publish_packet("mps/t", b"P" * 300, qos=0, version=V5))
        self.assert_disconnected(c, (0x95,))
        self.assert_no_packet(watch, 0.3, "oversized PUBLISH forwarded")
        self.assert_broker_works(V5)


# ---------------------------------------------------------------------------
# 6. Subscription options
# ---------------------------------------------------------------------------

class SubscriptionOptions(Mqtt5Case):

    def test_no_local(self):
        """No Local: the client's own messages are not sent back [MQTT-3.8.3-3];
        other clients' are."""
        c, _, _ = self.v5("nl-me")
        self.assertEqual(c.subscribe([("nl/#", 1 | NL)]), [1])
        c.publish("nl/a", b"mine", qos=1)
        self.assert_no_packet(c, 0.4, "own PUBLISH despite No Local")
        o, _, _ = self.v5("nl-other")
        o.publish("nl/a", b"theirs", qos=1)
        self.assertEqual(c.recv_publish(3.0)["payload"], b"theirs")
        # Without No Local (other filter, same client) it does come back.
        self.assertEqual(c.subscribe([("nl/b", 1)], mid=2), [1])
        c.publish("nl/b", b"echo", qos=1, mid=3)
        self.assertEqual(c.recv_publish(3.0)["payload"], b"echo")

    def test_retain_as_published(self):
        """Live delivery keeps the retain flag with Retain As Published,
        clears it without [MQTT-3.3.1-12, -13]."""
        rap = self.sub("-V", "mqttv5", "--retain-as-published", "-t", "rap/#", "-F", "%r %t %p")
        plain = self.sub("-V", "mqttv5", "-t", "rap/#", "-F", "%r %t %p")
        self.pub("-V", "mqttv5", "-r", "-t", "rap/a", "-m", "kept")
        self.pub("-V", "mqttv5", "-t", "rap/a", "-m", "live")
        self.assertEqual(rap.wait_messages(2, 3.0), ["1 rap/a kept", "0 rap/a live"], rap.describe())
        self.assertEqual(plain.wait_messages(2, 3.0), ["0 rap/a kept", "0 rap/a live"],
                         plain.describe())

    def test_retain_handling(self):
        """0: retained sent on every SUBSCRIBE; 1: only when the subscription
        is new; 2: never [MQTT-3.3.1-9, -10, -11]. Live messages flow in all."""
        self.pub("-V", "mqttv5", "-r", "-t", "rh/a", "-m", "ret")
        results = {}
        for n in (0, 1, 2):
            c, _, _ = self.v5("rh-%d" % n)
            counts = []
            for mid in (1, 2):
                self.assertEqual(c.subscribe([("rh/#", 1 | rh(n))], mid=mid), [1])
                k = 0
                while True:
                    try:
                        m = c.recv_publish(0.4)
                    except TimeoutError:
                        break
                    self.assertEqual((m["topic"], m["payload"], m["retain"]), ("rh/a", b"ret", True))
                    k += 1
                counts.append(k)
            results[n] = counts
            c.disconnect()
        self.assertEqual(results, {0: [1, 1], 1: [1, 0], 2: [0, 0]})
        c, _, _ = self.v5("rh-live")
        c.subscribe([("rh/#", 1 | rh(2))])
        self.pub("-V", "mqttv5", "-t", "rh/a", "-m", "live")
        self.assertEqual(c.recv_publish(3.0)["payload"], b"live")

    def test_subscription_identifiers(self):
        """Each matching subscription's identifier is sent; overlapping ones
        give one message with both ids [MQTT-3.3.4-3, -4, -5]; a SUBSCRIBE
        without an id replaces the old one."""
        c, _, _ = self.v5("si")
        self.assertEqual(c.subscribe("si/#", qos=1, mid=1, properties=[("subscription_id", 1)]), [1])
        self.assertEqual(c.subscribe("si/+/x", qos=1, mid=2,
                                     properties=[("subscription_id", 2)]), [1])
        p, _, _ = self.v5("si-pub")

        def one(topic):
            p.publish(topic, b"v", qos=1)
            pk = c.expect(PUBLISH, 3.0)
            c.send(ack_packet(PUBACK, pk.publish(V5)["mid"]))
            return sorted(v for k, v in publish_props_list(pk) if k == "subscription_id")

        if MOSQUITTO_MODE:
            # mosquitto 2.0.11 sends one copy per matching subscription, each
            # with its own id (allowed: [MQTT-3.3.4-2] "MAY deliver further copies").
            first = one("si/a/x")
            pk = c.expect(PUBLISH, 3.0)
            c.send(ack_packet(PUBACK, pk.publish(V5)["mid"]))
            second = [v for k, v in publish_props_list(pk) if k == "subscription_id"]
            self.assertEqual(sorted(first + second), [1, 2])
        else:
            self.assertEqual(one("si/a/x"), [1, 2])
            self.assert_no_packet(c, 0.3, "second copy for overlapping subscriptions")
        self.assertEqual(one("si/b"), [1])
        # A retained message sent because of a SUBSCRIBE carries that
        # subscription's id only (its live copy went out with id 1).
        self.assertEqual(one("si/r"), [1])
        p.publish("si/r", b"ret", qos=1, mid=2, retain=True)
        pk = c.expect(PUBLISH, 3.0)
        c.send(ack_packet(PUBACK, pk.publish(V5)["mid"]))
        c.send(subscribe_packet(3, [("si/r", 1)], V5, [("subscription_id", 7)]))
        c.expect(SUBACK, 3.0)
        pk = c.expect(PUBLISH, 3.0)
        self.assertTrue(pk.publish(V5)["retain"])
        self.assertEqual(sorted(v for k, v in publish_props_list(pk) if k == "subscription_id"),
                         [7])
        c.send(ack_packet(PUBACK, pk.publish(V5)["mid"]))
        # Re-subscribing si/# without an id drops id 1.
        self.assertEqual(c.subscribe("si/#", qos=1, mid=4), [1])
        self.assertEqual(one("si/b"), [])


# ---------------------------------------------------------------------------
# 7. Shared subscriptions
# ---------------------------------------------------------------------------

class SharedSubscriptions(Mqtt5Case):

    def test_messages_split_between_members(self):
        """Each message to exactly one member of $share/g/... [MQTT-4.8.2];
        a plain subscriber still gets all."""
        a = self.sub("-V", "mqttv5", "-q", 1, "-t", "$share/g/sensors/#", "-v")
        b = self.sub("-V", "mqttv5", "-q", 1, "-t", "$share/g/sensors/#", "-v")
        allsub = self.sub("-V", "mqttv5", "-q", 1, "-t", "sensors/#", "-v")
        p, _, _ = self.v5("sh-pub")
        sent = ["sensors/%d v%d" % (i % 3, i) for i in range(10)]
        for i in range(10):
            p.publish("sensors/%d" % (i % 3), b"v%d" % i, qos=1, mid=i + 1)
        self.assertEqual(allsub.wait_messages(10, 5.0), sent, allsub.describe())
        deadline = time.monotonic() + 5.0
        while len(a.messages) + len(b.messages) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a duplicate would show up now
        got_a, got_b = a.wait_messages(0, 0), b.wait_messages(0, 0)
        self.assertEqual(sorted(got_a + got_b), sorted(sent),
                         "lost or duplicated: a=%r b=%r" % (got_a, got_b))
        self.assertTrue(got_a and got_b, "not shared: a=%r b=%r" % (got_a, got_b))

    @loopbot_only("mosquitto 2.0.11 drops the unacknowledged messages of a departed "
                  "member with its session; the spec only says SHOULD [MQTT-4.8.2]")
    def test_unacked_messages_of_departed_member_go_to_other(self):
        """A member that received QoS 1 messages and closes without PUBACK
        (session expiry 0): those messages go to the other member."""
        a = self.v5sub("sh-a", "$share/g/sensors/#")
        b = self.v5sub("sh-b", "$share/g/sensors/#")
        p, _, _ = self.v5("sh-pub")
        sent = [b"m%d" % i for i in range(6)]
        for i, m in enumerate(sent):
            p.publish("sensors/t", m, qos=1, mid=i + 1)
        got_a, got_b = [], []
        deadline = time.monotonic() + 3.0
        while len(got_a) + len(got_b) < 6 and time.monotonic() < deadline:
            for c, got, ack in ((a, got_a, False), (b, got_b, True)):
                try:
                    got.append(c.recv_publish(0.05, ack=ack)["payload"])
                except TimeoutError:
                    pass
        self.assertEqual(sorted(got_a + got_b), sorted(sent))
        self.assertTrue(got_a, "member a got nothing: the hand-off is not exercised")
        a.close()
        moved = []
        try:
            while len(moved) < len(got_a):
                m = b.recv_publish(3.0)
                moved.append(m["payload"])
        except TimeoutError:
            pass
        self.assertEqual(sorted(moved), sorted(got_a),
                         "a's unacknowledged messages did not reach b")
        self.assert_no_packet(b, 0.3)

    @loopbot_only("mosquitto 2.0.11 grants No Local on a shared subscription")
    def test_shared_subscription_with_no_local_is_protocol_error(self):
        """[MQTT-3.8.3-4]: No Local on a shared subscription: 0x82."""
        c, _, _ = self.v5("sh-nl")
        c.send(subscribe_packet(1, [("$share/g/x", 1 | NL)], V5))
        self.assert_disconnected(c, (0x82,))

    @loopbot_only("mosquitto 2.0.11 sends retained messages to a new shared subscription")
    def test_no_retained_messages_for_shared_subscription(self):
        """Retained messages are not sent when a Session establishes a new
        Shared Subscription (MQTT 5.0 3.3.1.3, 4.8.2); live messages are."""
        self.pub("-V", "mqttv5", "-r", "-t", "sensors/r", "-m", "ret")
        c = self.v5sub("sh-ret", "$share/g/sensors/#")
        self.assert_no_packet(c, 0.5, "retained message on a shared subscription")
        self.pub("-V", "mqttv5", "-t", "sensors/r", "-m", "live")
        m = c.recv_publish(3.0)
        self.assertEqual((m["payload"], m["retain"]), (b"live", False))


# ---------------------------------------------------------------------------
# 8. Will Delay Interval
# ---------------------------------------------------------------------------

class WillDelay(Mqtt5Case):

    WILL_PROPS = [("content_type", "text/plain"), ("response_topic", "wills/ack"),
                  ("user_property", ("who", "me")), ("user_property", ("why", "test"))]

    def _willer(self, cid, delay, expiry):
        c, _, _ = self.v5(cid, properties=[("session_expiry", expiry)],
                          will=dict(topic="wills/" + cid, payload=b"gone", qos=1,
                                    properties=[("will_delay", delay)] + self.WILL_PROPS))
        return c

    def _will_time(self, watch, t0, timeout):
        pk = watch.expect(PUBLISH, timeout)
        dt = time.monotonic() - t0
        m = pk.publish(V5)
        watch.send(ack_packet(PUBACK, m["mid"]))
        self.assertEqual(m["payload"], b"gone")
        # The will's properties travel with it (the Will Delay Interval does not).
        pl = publish_props_list(pk)
        self.assertIn(("content_type", b"text/plain"), pl)
        self.assertIn(("response_topic", b"wills/ack"), pl)
        self.assertEqual([v for k, v in pl if k == "user_property"],
                         [(b"who", b"me"), (b"why", b"test")])
        self.assertNotIn("will_delay", [k for k, v in pl])
        return dt

    def test_will_delayed(self):
        """Will Delay 2, session expiry 60, connection lost: the will goes out
        after ~2 s, not at once [MQTT-3.1.3-9]."""
        watch = self.v5sub("wd-watch", "wills/#")
        c = self._willer("wd-2", 2, 60)
        t0 = time.monotonic()
        c.close()
        dt = self._will_time(watch, t0, 5.0)
        self.assertGreaterEqual(dt, 1.5, "will published %.2f s after the drop" % dt)
        self.assertLessEqual(dt, 4.0)

    def test_reconnect_within_delay_cancels_will(self):
        watch = self.v5sub("wd-watch", "wills/#")
        c = self._willer("wd-re", 1, 60)
        c.close()
        time.sleep(0.3)
        c2 = self.raw()
        sp, _, _ = c2.connect("wd-re", version=V5, clean=False, properties=[("session_expiry", 60)])
        self.assertEqual(sp, 1)
        self.assert_no_packet(watch, 2.5, "will after the client came back")
        c2.disconnect()

    def test_session_end_publishes_will_before_delay(self):
        """Will Delay 10 > session expiry 1: the will goes out when the
        session ends [MQTT-3.1.2-8]."""
        watch = self.v5sub("wd-watch", "wills/#")
        c = self._willer("wd-se", 10, 1)
        t0 = time.monotonic()
        c.close()
        dt = self._will_time(watch, t0, 4.0)
        self.assertGreaterEqual(dt, 0.5, "will published %.2f s after the drop" % dt)

    @loopbot_only("mosquitto 2.0.11 waits the Will Delay Interval even when the session "
                  "ended at the disconnect (session expiry 0)")
    def test_session_expiry_zero_will_immediate(self):
        """Will Delay 5 with session expiry 0: the session ends at once and
        so the will is published at once."""
        watch = self.v5sub("wd-watch", "wills/#")
        c = self._willer("wd-0", 5, 0)
        t0 = time.monotonic()
        c.close()
        dt = self._will_time(watch, t0, 2.0)
        self.assertLess(dt, 1.0)


# ---------------------------------------------------------------------------
# 9. Request / response properties
# ---------------------------------------------------------------------------

USER_PROPS = [("k1", "v1"), ("k2", "v2"), ("k1", "v3"), ("z", "")]


class RequestResponse(Mqtt5Case):

    def _cli_publish(self, qos=1):
        args = ["-V", "mqttv5", "-q", qos, "-t", "rr/req", "-m", "hello",
                "-D", "publish", "response-topic", "rr/reply",
                "-D", "publish", "correlation-data", "corr-42",
                "-D", "publish", "content-type", "text/plain",
                "-D", "publish", "payload-format-indicator", 1]
        for k, v in USER_PROPS:
            args += ["-D", "publish", "user-property", k, v]
        self.pub(*args)

    def test_properties_forwarded_unchanged(self):
        """Response Topic, Correlation Data, Content Type, Payload Format
        Indicator and User Properties (in order) are forwarded unaltered
        [MQTT-3.3.2-15..20]."""
        c = self.v5sub("rr-raw", "rr/#")
        cli = self.sub("-V", "mqttv5", "-t", "rr/#", "-F", "%t|%R|%D|%C|%F|%P|%p")
        self._cli_publish()
        pk = c.expect(PUBLISH, 3.0)
        m = pk.publish(V5)
        c.send(ack_packet(PUBACK, m["mid"]))
        self.assertEqual(m["payload"], b"hello")
        pl = publish_props_list(pk)
        got = dict((k, v) for k, v in pl if k != "user_property")
        self.assertEqual(got.get("response_topic"), b"rr/reply")
        self.assertEqual(got.get("correlation_data"), b"corr-42")
        self.assertEqual(got.get("content_type"), b"text/plain")
        self.assertEqual(got.get("payload_format"), 1)
        ups = [(k.decode(), v.decode()) for n, (k, v) in
               [(n, v) for n, v in pl if n == "user_property"]]
        self.assertEqual(ups, USER_PROPS, "user properties lost or reordered")
        line = cli.wait_messages(1, 3.0)
        self.assertEqual(len(line), 1, cli.describe())
        self.assertTrue(line[0].startswith("rr/req|rr/reply|corr-42|text/plain|1|"), line)
        self.assertTrue(line[0].endswith("|hello"), line)

    def test_binary_correlation_data_and_retained(self):
        """Binary correlation data is forwarded byte for byte, also from the
        retained store."""
        p, _, _ = self.v5("rr-pub")
        corr = bytes(range(256)) + b"\x00\xff"
        pr = [("correlation_data", corr), ("response_topic", "rr/reply"),
              ("user_property", ("a", "1")), ("user_property", ("b", "2"))]
        p.publish("rr/bin", b"\x00\x01binary", qos=1, retain=True, properties=pr)
        c = self.v5sub("rr-sub", "rr/#")
        pk = c.expect(PUBLISH, 3.0)
        pl = publish_props_list(pk)
        self.assertEqual(pk.publish(V5)["payload"], b"\x00\x01binary")
        self.assertIn(("correlation_data", corr), pl)
        self.assertEqual([v for k, v in pl if k == "user_property"],
                         [(b"a", b"1"), (b"b", b"2")])

    def test_v311_subscriber_gets_message_without_properties(self):
        raw311 = self.raw()
        raw311.connect("rr-311", version=4)
        raw311.subscribe("rr/#", qos=1)
        cli = self.sub("-V", "mqttv311", "-t", "rr/#", "-v")
        self._cli_publish()
        m = raw311.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"], m["qos"]), ("rr/req", b"hello", 1))
        self.assertEqual(cli.wait_messages(1, 3.0), ["rr/req hello"], cli.describe())

    @loopbot_only("mosquitto 2.0.11 does not check payloads against the Payload Format "
                  "Indicator (the check is a MAY); it delivers them")
    def test_payload_format_utf8_invalid(self):
        """PFI 1 with a payload that is not UTF-8: 0x99 Payload format
        invalid [MQTT-3.3.2-4]; loopbot disconnects (mqtt/error.h
        PAYLOAD_NOT_UTF8); the message is not delivered."""
        watch = self.v5sub("rr-w", "rr/#")
        c, _, _ = self.v5("rr-bad")
        c.send(publish_packet("rr/x", b"\xff\xfe bad", qos=1, mid=1, version=V5,
                              properties=[("payload_format", 1)]))
        self.assert_disconnected(c, (0x99,))
        self.assert_no_packet(watch, 0.3, "invalid UTF-8 payload forwarded")
        # PFI 1 with valid UTF-8 (and PFI 0 with anything) goes through.
        p, _, _ = self.v5("rr-ok")
        p.publish("rr/x", "grüße".encode(), qos=1, properties=[("payload_format", 1)])
        p.publish("rr/x", b"\xff\xfe", qos=1, mid=2, properties=[("payload_format", 0)])
        self.assertEqual(watch.recv_publish(3.0)["payload"], "grüße".encode())
        self.assertEqual(watch.recv_publish(3.0)["payload"], b"\xff\xfe")


# ---------------------------------------------------------------------------
# 10. Reason codes and reason strings
# ---------------------------------------------------------------------------

class ReasonCodes(Mqtt5Case):

    def test_puback_no_matching_subscribers(self):
        """0x10 when nobody matched, 0x00 when someone did (QoS 1 and 2;
        mosquitto 2.0.11 answers a QoS 2 PUBLISH nobody matched with PUBREC 0x00)."""
        p, _, _ = self.v5("rc-pub")
        self.assertEqual(p.publish("rc/none", b"x", qos=1).reason(), 0x10)
        self.assertEqual(p.publish("rc/none", b"x", qos=2, mid=2).reason(),
                         0x00 if MOSQUITTO_MODE else 0x10)
        self.v5sub("rc-sub", "rc/#")
        self.assertEqual(p.publish("rc/some", b"x", qos=1, mid=3).reason(), 0x00)
        self.assertEqual(p.publish("rc/some", b"x", qos=2, mid=4).reason(), 0x00)

    def test_suback_invalid_filter(self):
        """a/#/b is not a valid filter: 0x8F in its SUBACK slot; the other
        filter of the same SUBSCRIBE is granted [MQTT-3.9.3]."""
        c, _, _ = self.v5("rc-sf")
        c.send(subscribe_packet(1, [("a/#/b", 1), ("ok/#", 1), ("x+/y", 0)], V5))
        if MOSQUITTO_MODE:
            # mosquitto 2.0.11 treats an invalid filter as a malformed packet.
            self.assert_disconnected(c, (), mosq=(0x81,))
            return
        self.assertEqual(c.expect(SUBACK, 3.0).suback_codes(V5), [0x8F, 1, 0x8F])
        p, _, _ = self.v5("rc-sfp")
        p.publish("ok/1", b"y", qos=1)
        self.assertEqual(c.recv_publish(3.0)["payload"], b"y")

    def test_unsuback_no_subscription_existed(self):
        c, _, _ = self.v5("rc-un")
        c.subscribe("un/a", qos=1)
        c.send(unsubscribe_packet(2, ["un/a", "un/never"], V5))
        ack = c.expect(UNSUBACK, 3.0)
        self.assertEqual(ack.mid(), 2)
        self.assertEqual(ack.suback_codes(V5), [0x00, 0x11])

    @loopbot_only("mosquitto 2.0.11 closes a timed-out v5 client without DISCONNECT 0x8D")
    def test_keepalive_timeout_0x8d(self):
        c, _, _ = self.v5("rc-ka", keepalive=1)
        t0 = time.monotonic()
        _, p = self.assert_disconnected(c, (0x8D,), timeout=4.0)
        dt = time.monotonic() - t0
        self.assertGreaterEqual(dt, 1.3, "dropped before 1.5 x keep alive")

    @loopbot_only("mosquitto 2.0.11 closes a taken-over v5 connection without DISCONNECT 0x8E")
    def test_takeover_0x8e(self):
        a, _, _ = self.v5("rc-same")
        self.v5("rc-same")
        self.assert_disconnected(a, (0x8E,))

    def test_sigterm_shutdown_0x8b(self):
        """On SIGTERM every v5 client is told 0x8B Server shutting down."""
        c, _, _ = self.v5("rc-term")
        c311 = self.raw()
        c311.connect("rc-term-311", version=4)
        self.assertEqual(self.broker.stop(signal.SIGTERM), 0)
        self.assert_disconnected(c, (0x8B,), mosq=None)
        closed, pkts = c311.wait_closed(1.0)
        self.assertTrue(closed)
        self.assertEqual(pkts, [], "v3.1.1 client sent something on shutdown")
        self.broker.start()  # for tearDown's checks
        self.port = self.broker.port

    def test_protocol_error_disconnect_has_reason_string(self):
        """A v5 client that breaks the protocol is told why: DISCONNECT with a
        reason code and (loopbot) a Reason String, even when it asked for no
        problem information (that only restricts other packets) [MQTT-3.1.2-29]."""
        c, _, _ = self.v5("rc-rs", properties=[("request_problem_info", 0)])
        c.send(publish_packet("rc/x", b"", qos=1, mid=0, version=V5))
        self.assert_disconnected(c, (0x82, 0x81))


# ---------------------------------------------------------------------------
# 11. CONNACK properties and server limits
# ---------------------------------------------------------------------------

class Connack(Mqtt5Case):

    def test_connack_defaults(self):
        """Absent means available / QoS 2; loopbot states them explicitly."""
        _, _, p = self.v5("ca-d")
        self.assertEqual(p.get("retain_available", 1), 1)
        self.assertEqual(p.get("wildcard_sub_available", 1), 1)
        self.assertEqual(p.get("sub_id_available", 1), 1)
        self.assertEqual(p.get("shared_sub_available", 1), 1)
        self.assertNotIn("maximum_qos", p)
        self.assertNotIn("server_keep_alive", p)
        self.assertNotIn("assigned_client_id", p)
        self.assertNotIn("maximum_packet_size", p)

    @broker_config(max_qos=1)
    def test_max_qos_1(self):
        """CONNACK Maximum QoS 1; a QoS 2 subscription is granted 1
        [MQTT-3.2.2-9]; a QoS 2 PUBLISH: DISCONNECT 0x9B [MQTT-3.2.2-11]."""
        c, _, p = self.v5("ca-q")
        self.assertEqual(p.get("maximum_qos"), 1)
        self.assertEqual(c.subscribe("q/#", qos=2), [1])
        p2, _, _ = self.v5("ca-qp")
        p2.publish("q/a", b"one", qos=1)
        m = c.recv_publish(3.0)
        self.assertEqual((m["payload"], m["qos"]), (b"one", 1))
        p2.send(publish_packet("q/a", b"two", qos=2, mid=2, version=V5))
        self.assert_disconnected(p2, (0x9B,))
        self.assert_no_packet(c, 0.3, "QoS 2 PUBLISH above Maximum QoS forwarded")

    @broker_config(max_keepalive=10)
    def test_server_keep_alive(self):
        _, _, p = self.v5("ca-ka", keepalive=60)
        self.assertEqual(p.get("server_keep_alive"), 10)

    def test_assigned_client_identifier(self):
        """Empty client id: the CONNACK assigns one [MQTT-3.2.2-16]; it names
        a real session: reconnecting with it (clean start 0) finds it."""
        c, sp, p = self.v5("", properties=[("session_expiry", 60)])
        cid = p.get("assigned_client_id")
        self.assertTrue(cid, "no Assigned Client Identifier: %r" % p)
        c.subscribe("acid/t", qos=1)
        c.disconnect()
        self.pub("-V", "mqttv5", "-q", 1, "-t", "acid/t", "-m", "for-you")
        c2 = self.raw()
        sp, _, p2 = c2.connect(cid, version=V5, clean=False, properties=[("session_expiry", 60)])
        self.assertEqual(sp, 1)
        self.assertNotIn("assigned_client_id", p2)
        self.assertEqual(c2.recv_publish(3.0)["payload"], b"for-you")
        # A second empty-id client gets a different id.
        _, _, p3 = self.v5("")
        self.assertNotEqual(p3.get("assigned_client_id"), cid)

    @broker_config(retain_available="false")
    def test_retain_not_available(self):
        """CONNACK Retain Available 0; a retained PUBLISH: DISCONNECT 0x9A
        [MQTT-3.2.2-14]."""
        c, _, p = self.v5("ca-r")
        self.assertEqual(p.get("retain_available"), 0)
        c.publish("r/a", b"plain", qos=1)
        c.send(publish_packet("r/a", b"kept", qos=1, mid=2, retain=True, version=V5))
        self.assert_disconnected(c, (0x9A,))
        s = self.v5sub("ca-rs", "r/#")
        self.assert_no_packet(s, 0.4, "retained message stored although unavailable")


# ---------------------------------------------------------------------------
# 12. Enhanced authentication
# ---------------------------------------------------------------------------

class EnhancedAuth(Mqtt5Case):

    def test_unknown_authentication_method_refused(self):
        """No method is supported: CONNACK 0x8C Bad authentication method,
        then close [MQTT-4.12.0-1]."""
        c = self.raw()
        c.send(connect_packet("ea", version=V5,
                              properties=[("auth_method", "SCRAM-SHA-1"),
                                          ("auth_data", b"n,,n=user,r=abc")]))
        sp, rc, _ = c.expect(CONNACK, 3.0).connack(V5)
        self.assertEqual(rc, 0x8C)
        closed, pkts = c.wait_closed(2.0)
        self.assertTrue(closed)
        self.assertEqual(pkts, [])
        self.assert_broker_works(V5)

    def test_auth_packet_without_method_is_protocol_error(self):
        """AUTH after a CONNECT without Authentication Method: 0x82
        [MQTT-4.12.0-7]."""
        c, _, _ = self.v5("ea-2")
        c.send(auth_packet(0x19, [("auth_method", "SCRAM-SHA-1")]))
        self.assert_disconnected(c, (0x82,), mosq=None)  # mosquitto: plain close
        self.assert_broker_works(V5)


# ---------------------------------------------------------------------------
# 13. v3.1.1 <-> v5 interoperation
# ---------------------------------------------------------------------------

class Interop(Mqtt5Case):

    def test_v311_publisher_to_v5_subscriber(self):
        c = self.v5sub("io-5", "io/#", qos=2)
        self.pub("-V", "mqttv311", "-q", 1, "-t", "io/a", "-m", "from311")
        self.pub("-V", "mqttv311", "-q", 2, "-t", "io/b", "-m", "from311-2")
        m1, m2 = c.recv_publish(3.0), c.recv_publish(3.0)
        self.assertEqual((m1["topic"], m1["payload"], m1["qos"], m1["props"]),
                         ("io/a", b"from311", 1, {}))
        self.assertEqual((m2["topic"], m2["payload"], m2["qos"], m2["props"]),
                         ("io/b", b"from311-2", 2, {}))

    def test_v5_publisher_with_properties_to_v311_subscriber(self):
        c = self.raw()
        c.connect("io-311", version=4)
        self.assertEqual(c.subscribe("io/#", qos=2), [2])
        cli = self.sub("-V", "mqttv311", "-q", 2, "-t", "io/#", "-v")
        payload = "v5 payload \u00e9"
        self.pub("-V", "mqttv5", "-q", 2, "-t", "io/p", "-m", payload,
                 "-D", "publish", "user-property", "k", "v",
                 "-D", "publish", "content-type", "text/plain",
                 "-D", "publish", "message-expiry-interval", 60,
                 "-D", "publish", "response-topic", "io/r")
        m = c.recv_publish(3.0)
        self.assertEqual((m["topic"], m["payload"], m["qos"]), ("io/p", payload.encode(), 2))
        self.assertEqual(cli.wait_messages(1, 3.0), ["io/p " + payload], cli.describe())
