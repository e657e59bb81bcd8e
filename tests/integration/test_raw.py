"""Malformed and unusual input on raw sockets.

Every bad case: send the bytes, the broker must close the connection within
2 s. After a v5 CONNACK, loopbot must send DISCONNECT with the expected
reason code first (the set of codes the spec allows for the case, taken from
mqtt/error.h); in mosquitto mode the exact mosquitto 2.0.11 behaviour is
asserted (it often closes without a DISCONNECT). Then another client must
still be able to connect, subscribe, publish and receive."""

import os
import random
import socket
import struct
import threading
import time
import unittest

from harness import (MOSQUITTO_MODE, HOST, BrokerTestCase, broker_config, loopbot_only,
                     RawClient, Closed, CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK,
                     PUBREL, UNSUBSCRIBE, DISCONNECT, PINGRESP, AUTH, packet, varint, mstr,
                     connect_packet, publish_packet, subscribe_packet, ack_packet)

NO_DISCONNECT = None


def raw_connect(version, flags=0x02, name=None, body_extra=b"", client_id="z", props=b"\x00"):
    name = name if name is not None else ("MQIsdp" if version == 3 else "MQTT")
    vh = mstr(name) + bytes([version, flags]) + b"\x00\x3c"
    if version == 5:
        vh += props
    return packet(CONNECT, 0, vh + mstr(client_id) + body_extra)


class Malformed(BrokerTestCase):

    def check_connect_refused(self, data, need_connack=False):
        """A bad first packet: closed within 2 s; the only thing the broker
        may send first is a CONNACK that refuses."""
        c = self.raw()
        c.try_send(data)
        t0 = time.monotonic()
        closed, pkts = c.wait_closed(2.0)
        self.assertTrue(closed, "not closed after %.1fs (got %r)" % (time.monotonic() - t0, pkts))
        for p in pkts:
            self.assertEqual(p.type, CONNACK, pkts)
            self.assertNotEqual(p.body[1], 0, "CONNACK accepted a bad CONNECT: %r" % pkts)
        if need_connack:
            self.assertEqual(len(pkts), 1, "no refusing CONNACK before close")
        self.assert_broker_works(4)
        return pkts

    def check_after_connect(self, version, data, v5_reasons=(), mosq=NO_DISCONNECT):
        """Connect, send the bad bytes: closed within 2 s. v5: loopbot sends
        exactly one DISCONNECT whose reason is in v5_reasons; mosquitto sends
        DISCONNECT `mosq` or none."""
        c = self.raw()
        c.connect("bad-client", version=version)
        c.try_send(data)
        t0 = time.monotonic()
        closed, pkts = c.wait_closed(2.0)
        self.assertTrue(closed, "not closed after %.1fs (got %r)" % (time.monotonic() - t0, pkts))
        if version == 5:
            reasons = [p.reason() for p in pkts if p.type == DISCONNECT]
            self.assertEqual([p for p in pkts if p.type != DISCONNECT], [], pkts)
            if MOSQUITTO_MODE:
                self.assertEqual(reasons, [] if mosq is None else [mosq], pkts)
            else:
                self.assertEqual(len(reasons), 1, "want one DISCONNECT before close: %r" % pkts)
                self.assertIn(reasons[0], v5_reasons,
                              "DISCONNECT reason 0x%02x, want one of %s"
                              % (reasons[0], ["0x%02x" % r for r in v5_reasons]))
        else:
            self.assertEqual(pkts, [], "a v3 broker must just close")
        self.assert_broker_works(version)

    # ---------------- CONNECT phase ----------------

    def test_first_packet_not_connect(self):
        self.check_connect_refused(publish_packet("a", b"x"))

    def test_first_packet_pingreq(self):
        self.check_connect_refused(bytes([0xC0, 0]))

    def test_bad_protocol_name_v311(self):
        self.check_connect_refused(raw_connect(4, name="MQTX"))

    def test_bad_protocol_name_v5(self):
        self.check_connect_refused(raw_connect(5, name="MQTX"))

    def test_mqisdp_name_with_level_4(self):
        self.check_connect_refused(raw_connect(4, name="MQIsdp"))

    def test_protocol_level_6(self):
        """mosquitto answers a v3-style CONNACK 0x01 (2 bytes, it cannot know
        which format the client reads); a v5-style 0x84 is also accepted."""
        pkts = self.check_connect_refused(raw_connect(6), need_connack=True)
        body = pkts[0].body
        self.assertTrue(body == b"\x00\x01" or body[1] == 0x84, pkts)
        if MOSQUITTO_MODE:
            self.assertEqual(body, b"\x00\x01")

    def test_protocol_level_6_with_v5_properties(self):
        data = packet(CONNECT, 0, mstr("MQTT") + b"\x06\x02\x00\x3c\x00" + mstr("z"))
        pkts = self.check_connect_refused(data, need_connack=True)
        self.assertTrue(pkts[0].body == b"\x00\x01" or pkts[0].body[1] == 0x84, pkts)

    def test_connect_reserved_flag_v311(self):
        self.check_connect_refused(connect_packet("z", version=4, reserved=True))

    def test_connect_reserved_flag_v5(self):
        self.check_connect_refused(connect_packet("z", version=5, reserved=True))

    def test_connect_fixed_header_flags(self):
        self.check_connect_refused(packet(CONNECT, 1, connect_packet("z")[2:]))

    def test_will_qos_3_v311(self):
        self.check_connect_refused(connect_packet("z", will=dict(topic="w", payload=b"p", qos=3)))

    def test_will_qos_3_v5(self):
        self.check_connect_refused(connect_packet("z", version=5,
                                                  will=dict(topic="w", payload=b"p", qos=3)))

    def test_will_qos_without_will_flag(self):
        self.check_connect_refused(connect_packet("z", raw_flags=0x0A))

    def test_will_retain_without_will_flag(self):
        self.check_connect_refused(connect_packet("z", raw_flags=0x22))

    def test_password_without_username_v311(self):
        self.check_connect_refused(connect_packet("z", version=4, password=b"pw"))

    def test_password_without_username_v5_is_allowed(self):
        """MQTT 5 dropped the rule [MQTT-3.1.2-22]: this must be accepted."""
        c = self.raw()
        c.connect("pw-only", version=5, password=b"pw")
        c.subscribe("pw/t")
        c.publish("pw/t", b"ok")
        self.assertEqual(c.recv_publish(2.0)["payload"], b"ok")

    def test_client_id_invalid_utf8(self):
        self.check_connect_refused(connect_packet(b"\xff\xfe"))

    def test_connect_v5_property_length_past_end(self):
        self.check_connect_refused(raw_connect(5, props=b"\x05\x11"))

    def test_remaining_length_overlong_varint(self):
        self.check_connect_refused(b"\x10\xff\xff\xff\xff\x7f")

    def test_truncated_connect_then_close(self):
        c = self.raw()
        c.send(connect_packet("truncated", will=dict(topic="w", payload=b"p"))[:9])
        with self.assertRaises(TimeoutError):  # nothing is answered to half a packet
            c.recv_packet(0.3)
        c.close()
        self.assert_broker_works(4)
        self.assert_broker_works(5)

    def test_connect_one_byte_at_a_time(self):
        c = self.raw()
        for b in connect_packet("slow", version=4, keepalive=30):
            c.send(bytes([b]))
            time.sleep(0.005)
        sp, rc, _ = c.expect(CONNACK).connack()
        self.assertEqual(rc, 0)
        for b in subscribe_packet(3, [("slow/t", 1)]):
            c.send(bytes([b]))
            time.sleep(0.002)
        self.assertEqual(c.expect(SUBACK).suback_codes(), [1])
        for b in publish_packet("slow/t", b"byte by byte", qos=1, mid=4):
            c.send(bytes([b]))
            time.sleep(0.002)
        c.expect(PUBACK)
        m = c.recv_publish(2.0)
        self.assertEqual(m["payload"], b"byte by byte")

    def test_many_packets_in_one_segment(self):
        n = 100
        data = bytearray(connect_packet("batch", version=4))
        data += subscribe_packet(1, [("batch/t", 1)])
        for i in range(n):
            data += publish_packet("batch/t", b"m%03d" % i, qos=1, mid=100 + i)
        data += bytes([0xC0, 0])
        c = self.raw()
        c.send(bytes(data))
        self.assertEqual(c.expect(CONNACK).connack()[1], 0)
        self.assertEqual(c.expect(SUBACK).suback_codes(), [1])
        acks, msgs, ping = [], [], 0
        deadline = time.monotonic() + 8.0
        while (len(acks) < n or len(msgs) < n or not ping) and time.monotonic() < deadline:
            p = c.recv_packet(max(0.05, deadline - time.monotonic()))
            if p.type == PUBACK:
                acks.append(p.mid())
            elif p.type == PUBLISH:
                m = p.publish()
                msgs.append(m["payload"])
                c.send(ack_packet(PUBACK, m["mid"]))
            elif p.type == PINGRESP:
                ping += 1
            else:
                self.fail("unexpected %r" % p)
        self.assertEqual(acks, [100 + i for i in range(n)])
        self.assertEqual(msgs, [b"m%03d" % i for i in range(n)])
        self.assertEqual(ping, 1)

    @loopbot_only("mosquitto 2.0.11 never drops a connection that sends no CONNECT")
    def test_no_connect_dropped_after_timeout(self):
        c = self.raw()
        t0 = time.monotonic()
        closed, _ = c.wait_closed(9.0)
        self.assertFalse(closed, "dropped after %.1fs, before the 10 s CONNECT timeout"
                         % (time.monotonic() - t0))
        closed, pkts = c.wait_closed(3.0)
        self.assertTrue(closed, "still open %.1fs after connect without CONNECT"
                        % (time.monotonic() - t0))
        self.assertEqual(pkts, [])
        self.assert_broker_works(4)

    # ---------------- after CONNACK ----------------

    def test_second_connect_v311(self):
        self.check_after_connect(4, connect_packet("again"))

    def test_second_connect_v5(self):
        self.check_after_connect(5, connect_packet("again", version=5), {0x82})

    def test_publish_topic_wildcard_v311(self):
        self.check_after_connect(4, publish_packet("a/+", b"x"))

    def test_publish_topic_wildcard_v5(self):
        self.check_after_connect(5, publish_packet("a/#", b"x", version=5), {0x90, 0x82}, 0x82)

    def test_publish_empty_topic_v311(self):
        self.check_after_connect(4, publish_packet("", b"x"))

    def test_publish_empty_topic_no_alias_v5(self):
        self.check_after_connect(5, publish_packet("", b"x", version=5), {0x82, 0x90}, 0x82)

    def test_publish_topic_nul_v311(self):
        self.check_after_connect(4, publish_packet("a\x00b", b"x"))

    def test_publish_topic_nul_v5(self):
        self.check_after_connect(5, publish_packet("a\x00b", b"x", version=5), {0x81}, 0x81)

    def test_publish_topic_surrogate_v311(self):
        self.check_after_connect(4, publish_packet(b"a\xed\xa0\x80", b"x"))

    def test_publish_topic_surrogate_v5(self):
        self.check_after_connect(5, publish_packet(b"a\xed\xa0\x80", b"x", version=5), {0x81}, 0x81)

    def test_publish_qos3_v311(self):
        self.check_after_connect(4, packet(PUBLISH, 6, mstr("a") + b"\x00\x01x"))

    def test_publish_qos3_v5(self):
        self.check_after_connect(5, packet(PUBLISH, 6, mstr("a") + b"\x00\x01\x00x"), {0x81}, 0x81)

    def test_publish_qos1_packet_id_0_v311(self):
        self.check_after_connect(4, publish_packet("a", b"x", qos=1, mid=0))

    def test_publish_qos1_packet_id_0_v5(self):
        self.check_after_connect(5, publish_packet("a", b"x", qos=1, mid=0, version=5),
                                 {0x82, 0x81}, 0x82)

    def test_publish_truncated_topic_v5(self):
        self.check_after_connect(5, packet(PUBLISH, 0, b"\x00\x05ab"), {0x81}, 0x81)

    def test_subscribe_bad_flags_v311(self):
        self.check_after_connect(4, subscribe_packet(1, ["a"], flags=0))

    def test_subscribe_bad_flags_v5(self):
        self.check_after_connect(5, subscribe_packet(1, ["a"], version=5, flags=0), {0x81}, 0x81)

    def test_subscribe_no_filters_v311(self):
        self.check_after_connect(4, subscribe_packet(1, []))

    def test_subscribe_no_filters_v5(self):
        # Spec: Protocol Error (0x82); mosquitto says 0x81.
        self.check_after_connect(5, subscribe_packet(1, [], version=5), {0x82, 0x81}, 0x81)

    def test_unsubscribe_no_filters_v5(self):
        self.check_after_connect(5, packet(UNSUBSCRIBE, 2, b"\x00\x01\x00"), {0x82, 0x81}, 0x81)

    def test_subscribe_qos3_v311(self):
        self.check_after_connect(4, subscribe_packet(1, [("a", 3)]))

    def test_subscribe_options_reserved_bits_v5(self):
        self.check_after_connect(5, subscribe_packet(1, [("a", 0xC0)], version=5), {0x81}, 0x81)

    def test_subscribe_retain_handling_3_v5(self):
        self.check_after_connect(5, subscribe_packet(1, [("a", 0x30)], version=5),
                                 {0x82, 0x81}, 0x81)

    def test_pubrel_flags_0_v311(self):
        self.check_after_connect(4, packet(PUBREL, 0, b"\x00\x01"))

    def test_pubrel_flags_0_v5(self):
        self.check_after_connect(5, packet(PUBREL, 0, b"\x00\x01"), {0x81})

    def test_packet_type_0_v311(self):
        self.check_after_connect(4, packet(0, 0, b""))

    def test_packet_type_0_v5(self):
        self.check_after_connect(5, packet(0, 0, b""), {0x81, 0x82}, 0x82)

    def test_auth_in_v311(self):
        self.check_after_connect(4, packet(AUTH, 0, b""))

    def test_v5_duplicate_property(self):
        data = publish_packet("a", b"x", version=5,
                              properties=[("payload_format", 0), ("payload_format", 0)])
        self.check_after_connect(5, data, {0x82})

    def test_v5_unknown_property(self):
        data = publish_packet("a", b"x", version=5, raw_props=b"\x02\x7f\x00")
        self.check_after_connect(5, data, {0x81}, 0x81)

    def test_v5_property_not_allowed_in_publish(self):
        data = publish_packet("a", b"x", version=5, properties=[("session_expiry", 0)])
        self.check_after_connect(5, data, {0x82, 0x81}, 0x81)

    def test_v5_topic_alias_0(self):
        data = publish_packet("a", b"x", version=5, properties=[("topic_alias", 0)])
        self.check_after_connect(5, data, {0x94}, 0x81)

    def test_overlong_varint_after_connect_v311(self):
        self.check_after_connect(4, b"\x30\xff\xff\xff\xff\x7f")

    def test_overlong_varint_after_connect_v5(self):
        self.check_after_connect(5, b"\x30\xff\xff\xff\xff\x7f", {0x81})

    def test_varint_not_minimal_accepted(self):
        """A remaining length in more bytes than needed (0x80 0x00 for 0) is
        read, as mosquitto reads it: the shortest-form rule [MQTT-1.5.5-1]
        binds senders (docs/design.md)."""
        for version in (4, 5):
            c = self.raw()
            c.connect("nm%d" % version, version=version)
            c.send(b"\xc0\x80\x00")
            c.expect(PINGRESP, timeout=2.0)

    @loopbot_only("mosquitto 2.0.11 ignores bytes after a PINGREQ")
    def test_pingreq_with_payload_v5(self):
        self.check_after_connect(5, b"\xc0\x01\x00", {0x81})

    # -------- announced size over the limit: refused without waiting --------
    # mosquitto 2.0.11 checks an announced remaining length only against
    # max_packet_size (not message_size_limit), so mosquitto mode adds it.
    HUGE = {"message_size_limit": 1000}
    if MOSQUITTO_MODE:
        HUGE["max_packet_size"] = 2000

    def check_huge(self, version):
        c = self.raw()
        if version:
            c.connect("huge", version=version)
        c.try_send(bytes([0x30 if version else 0x10]) + varint(200 * 1024 * 1024) + b"\x00\x01a")
        t0 = time.monotonic()
        closed, pkts = c.wait_closed(2.0)
        self.assertTrue(closed, "broker waits for 200 MB that will never come")
        self.assertLess(time.monotonic() - t0, 1.0)
        if version == 5:
            self.assertEqual([(p.type, p.reason()) for p in pkts], [(DISCONNECT, 0x95)])
        else:
            self.assertEqual([p for p in pkts if p.type != CONNACK], [])
        self.assert_broker_works(4)

    @broker_config(**HUGE)
    def test_huge_remaining_length_connect(self):
        self.check_huge(None)

    @broker_config(**HUGE)
    def test_huge_remaining_length_publish_v311(self):
        self.check_huge(4)

    @broker_config(**HUGE)
    def test_huge_remaining_length_publish_v5(self):
        self.check_huge(5)


class GarbageFlood(BrokerTestCase):

    def test_200_garbage_connections_while_pubsub_works(self):
        rnd = random.Random(1234)
        kinds = [0x00, 0x20, 0x30, 0x40, 0x82, 0xC0, 0xE0, 0xF0]

        def garbage(i):
            k = i % 10
            if k == 8:
                return b"\x10\xff\xff\xff\xff\x7f"            # overlong varint
            if k == 9:
                return raw_connect(4, name="HTTP") + b"junk"  # bad protocol name
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 40)))
            return bytes([kinds[i % len(kinds)]]) + varint(len(body)) + body + b"\xff" * 8

        payloads = [garbage(i) for i in range(200)]
        socks, errors = [], []
        lock = threading.Lock()

        def flood(part):
            for data in part:
                try:
                    s = socket.create_connection((HOST, self.port), timeout=5)
                    s.sendall(data)
                    with lock:
                        socks.append(s)
                except OSError as e:
                    with lock:
                        errors.append(repr(e))

        sub = self.raw()
        sub.connect("flood-sub", version=4)
        sub.subscribe("flood/t", qos=1)
        pub = self.raw()
        pub.connect("flood-pub", version=5)
        threads = [threading.Thread(target=flood, args=(payloads[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        got = []
        try:
            for i in range(200):
                pub.publish("flood/t", b"%d" % i, qos=1, mid=i + 1)
                while True:  # drain what has arrived so far
                    try:
                        got.append(sub.recv_publish(0.0)["payload"])
                    except TimeoutError:
                        break
        finally:
            for t in threads:
                t.join(20)
        deadline = time.monotonic() + 5.0
        while len(got) < 200 and time.monotonic() < deadline:
            got.append(sub.recv_publish(deadline - time.monotonic())["payload"])
        self.assertEqual(errors, [])
        self.assertEqual(got, [b"%d" % i for i in range(200)])
        # Every garbage connection gets closed.
        deadline = time.monotonic() + 5.0
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                still.append(s)
            open_ = still
            if open_:
                time.sleep(0.05)
        n_open = len(open_)
        for s in socks:
            s.close()
        self.assertEqual(n_open, 0, "%d garbage connections left open" % n_open)
        self.assert_broker_works(4)


if __name__ == "__main__":
    unittest.main()
