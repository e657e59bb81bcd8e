"""Security with real clients: password files (made by mosquitto_passwd and
loopbot_passwd), allow_anonymous, ACLs on publish, subscribe, wills and
retained messages, %c patterns, per_listener_settings with two listeners,
include_dir, and SIGHUP reloading the password file without disconnecting
anyone.

Each test writes its own complete config (the harness's default config
always starts with `allow_anonymous true`, and per_listener_settings must
come before any security option). Runs against mosquitto too
(LOOPBOT_TEST_AGAINST_MOSQUITTO): tests where loopbot deliberately differs
are marked loopbot_only."""

import os
import shlex
import shutil
import signal
import subprocess
import time
import unittest

from harness import (BROKER, HOST, MOSQUITTO_MODE, Broker, RawClient, Sub,
                     finish_broker, free_port, loopbot_only, run_pub, PUBLISH)

MOSQ_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
LOOPBOT_PASSWD = os.environ.get("LOOPBOT_PASSWD") or os.path.join(
    os.path.dirname(os.path.dirname(BROKER)), "tools", "loopbot_passwd") if BROKER else ""

ACL = """\
# anonymous clients
topic read public/#
topic write public/in

user alice
topic readwrite alice/#
topic deny alice/secret

user bob
topic readwrite bob/#
topic write alice/inbox
topic read devices/#

pattern readwrite devices/%c/#
"""


class SecBroker(Broker):
    """A broker with a config written from a template: {port}, {port2} and
    {dir} are filled in; files[name] = text are written into {dir}."""

    def __init__(self, template, files=None):
        super().__init__({})
        self.template = template
        self.files = dict(files or {})
        self.port2 = None

    def path(self, name):
        return os.path.join(self._dir, name)

    def _write_config(self):
        self.port2 = free_port()
        for name, text in self.files.items():
            p = self.path(name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if callable(text):
                text(p)
            else:
                with open(p, "w") as f:
                    f.write(text)
            os.chmod(p, 0o644)  # mosquitto drops to its own user
        extra = "user root\n" if MOSQUITTO_MODE and os.geteuid() == 0 else ""
        conf = extra + self.template.format(port=self.port, port2=self.port2, dir=self._dir,
                                            host=HOST) + "log_type all\nlog_dest stderr\n"
        path = self.path("broker.conf")
        with open(path, "w") as f:
            f.write(conf)
        return path


def mosq_passwd_file(users, sha512=()):
    """A callable writing a password file with the real mosquitto_passwd."""
    def make(path):
        first = True
        for user, pw in users.items():
            cmd = [MOSQ_PASSWD] + (["-H", "sha512"] if user in sha512 else []) + \
                  (["-c"] if first else []) + ["-b", path, user, pw]
            subprocess.run(cmd, check=True, capture_output=True, timeout=10)
            first = False
    return make


PASSWD = mosq_passwd_file({"alice": "wonderland", "bob": "builder"}, sha512=("bob",))


class SecurityTestCase(unittest.TestCase):
    TEMPLATE = ""
    FILES = {}

    def setUp(self):
        if not os.access(MOSQ_PASSWD, os.X_OK):
            self.skipTest("mosquitto_passwd not installed")
        self._procs = []
        self.broker = SecBroker(self.TEMPLATE, self.FILES)
        self.addCleanup(self.broker.cleanup)
        self.broker.start()
        self.port = self.broker.port

    def tearDown(self):
        finish_broker(self, self.broker, self._procs, require_exit_0=False)

    def sub(self, *args, port=None, **kw):
        s = Sub(port or self.port, *args, **kw)
        self._procs.append(s.proc)
        return s

    def pub(self, *args, port=None, check=True):
        return run_pub(port or self.port, *args, check=check)

    def raw(self, port=None):
        c = RawClient(HOST, port or self.port, 5.0)
        self.addCleanup(c.close)
        return c


class Passwords(SecurityTestCase):
    TEMPLATE = "listener {port} {host}\nallow_anonymous false\npassword_file {dir}/passwd\n"
    FILES = {"passwd": PASSWD}

    def test_right_password_pbkdf2_and_sha512(self):
        for v in ("mqttv311", "mqttv5"):
            self.pub("-V", v, "-u", "alice", "-P", "wonderland", "-t", "t", "-m", "1")
            self.pub("-V", v, "-u", "bob", "-P", "builder", "-t", "t", "-m", "1")

    def test_wrong_password_refused(self):
        r = self.pub("-u", "alice", "-P", "wrong", "-t", "t", "-m", "1", check=False)
        self.assertNotEqual(r.returncode, 0, r)
        # MQTT 3.1.1: CONNACK 4 (bad user name or password) or 5 (not
        # authorised, what mosquitto 2.0.11 sends): either is a refusal.
        c = self.raw()
        _, rc, _ = c.connect("w1", version=4, username="alice", password="wrong", expect_rc=None)
        self.assertIn(rc, (4, 5))
        c = self.raw()
        _, rc, _ = c.connect("w2", version=5, username="alice", password="wrong", expect_rc=None)
        self.assertIn(rc, (0x86, 0x87))
        c = self.raw()
        _, rc, _ = c.connect("w3", version=5, username="nobody", password="x", expect_rc=None)
        self.assertIn(rc, (0x86, 0x87))

    def test_anonymous_refused(self):
        r = self.pub("-t", "t", "-m", "1", check=False)
        self.assertNotEqual(r.returncode, 0, r)
        c = self.raw()
        _, rc, _ = c.connect("anon", version=5, expect_rc=None)
        self.assertEqual(rc, 0x87)

    @loopbot_only("loopbot_passwd is loopbot's tool")
    def test_loopbot_passwd_file(self):
        tool = LOOPBOT_PASSWD
        if not tool or not os.access(tool, os.X_OK):
            self.skipTest("loopbot_passwd not built at %s" % tool)
        path = self.broker.path("passwd")
        # a cross-built tool runs under the same emulator as the broker
        wrapper = shlex.split(os.environ.get("LOOPBOT_BROKER_WRAPPER", ""))
        subprocess.run(wrapper + [tool, "-b", path, "carol", "c4rol"], check=True, timeout=30)
        os.kill(self.broker.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            r = self.pub("-u", "carol", "-P", "c4rol", "-t", "t", "-m", "1", check=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.returncode, 0, r)
        # mosquitto_passwd's users are still there, untouched.
        self.pub("-u", "alice", "-P", "wonderland", "-t", "t", "-m", "1")


class NoPasswordFile(SecurityTestCase):
    TEMPLATE = "listener {port} {host}\nallow_anonymous false\n"

    def test_username_refused_without_password_file(self):
        # mosquitto 2.0.11: with allow_anonymous false and no password_file,
        # a client with a username is refused too.
        r = self.pub("-u", "alice", "-P", "x", "-t", "t", "-m", "1", check=False)
        self.assertNotEqual(r.returncode, 0, r)


class Acl(SecurityTestCase):
    TEMPLATE = ("listener {port} {host}\nallow_anonymous true\npassword_file {dir}/passwd\n"
                "acl_file {dir}/acl\n")
    FILES = {"passwd": PASSWD, "acl": ACL}

    def alice(self, *args):
        return ("-u", "alice", "-P", "wonderland") + args

    def bob(self, *args):
        return ("-u", "bob", "-P", "builder") + args

    def test_publish_denied_not_delivered(self):
        s = self.sub(*self.alice("-t", "alice/#", "-v"))
        self.pub(*self.alice("-t", "alice/ok", "-m", "1"))
        self.pub(*self.alice("-t", "alice/secret", "-m", "2"))  # denied: QoS 0 just dropped
        self.pub(*self.bob("-t", "alice/inbox", "-m", "3"))     # bob may write there
        self.pub(*self.bob("-t", "alice/other", "-m", "4"))     # bob may not
        got = s.wait_messages(2, 3.0)
        self.assertEqual(got[:2], ["alice/ok 1", "alice/inbox 3"], s.describe())
        self.assertTrue(s.no_more_messages(2, 0.5), s.describe())

    def test_publish_denied_v5_puback(self):
        c = self.raw()
        c.connect("pa", version=5, username="alice", password="wonderland")
        ack = c.publish("alice/secret", b"x", qos=1)
        self.assertEqual(ack.reason(), 0x87)
        ack = c.publish("alice/fine", b"x", qos=1)
        self.assertIn(ack.reason(), (0, 0x10))  # 0x10: no matching subscribers

    def test_anonymous_acl(self):
        s = self.sub("-t", "public/#", "-v")
        self.pub("-t", "public/in", "-m", "anon")      # write granted to anonymous
        self.pub("-t", "public/other", "-m", "no")     # not granted
        self.assertEqual(s.wait_messages(1, 3.0)[:1], ["public/in anon"], s.describe())
        self.assertTrue(s.no_more_messages(1, 0.5), s.describe())

    def test_anonymous_lines_not_for_users(self):
        # mosquitto 2.0: lines before any `user` are for anonymous clients only.
        s = self.sub(*self.alice("-t", "public/#", "-v"), wait_suback=True)
        self.pub("-t", "public/in", "-m", "anon")
        self.assertTrue(s.no_more_messages(0, 1.0), s.describe())

    @loopbot_only("mosquitto 2.0 grants every SUBSCRIBE and filters on delivery")
    def test_subscribe_denied_suback(self):
        c = self.raw()
        c.connect("sa", version=4, username="alice", password="wonderland")
        self.assertEqual(c.subscribe(["admin/#", "alice/#", "alice/secret"], qos=1),
                         [0x80, 1, 0x80])
        c5 = self.raw()
        c5.connect("sb", version=5, username="alice", password="wonderland")
        self.assertEqual(c5.subscribe(["admin/#", "#"], qos=1), [0x87, 1])

    def test_subscribe_wide_filter_gets_only_allowed(self):
        s = self.sub(*self.alice("-t", "#", "-v"))
        self.pub(*self.bob("-t", "bob/x", "-m", "hidden"))
        self.pub(*self.bob("-t", "alice/inbox", "-m", "shown"))
        self.assertEqual(s.wait_messages(1, 3.0)[:1], ["alice/inbox shown"], s.describe())
        self.assertTrue(s.no_more_messages(1, 0.5), s.describe())

    def test_will_to_denied_topic_not_published(self):
        s = self.sub(*self.bob("-t", "bob/#", "-v"))
        # alice may not write bob/...: her will there is dropped; bob's own
        # will to bob/will is the positive case.
        # mosquitto 2.0.11 accepts the CONNECT and drops the will when it is
        # due; refusing the CONNECT (5) also keeps it unpublished.
        c = self.raw()
        _, rc, _ = c.connect("wa", version=4, username="alice", password="wonderland",
                             will={"topic": "bob/from-alice", "payload": b"w1"}, expect_rc=None)
        self.assertIn(rc, (0, 5))
        c.close()  # no DISCONNECT: the will is due
        c2 = self.raw()
        c2.connect("wb", version=4, username="bob", password="builder",
                   will={"topic": "bob/will", "payload": b"w2"})
        c2.close()
        got = s.wait_messages(1, 3.0)
        self.assertEqual(got[:1], ["bob/will w2"], s.describe())
        self.assertTrue(s.no_more_messages(1, 0.5), s.describe())

    def test_retained_not_readable_not_delivered(self):
        self.pub(*self.bob("-r", "-t", "bob/retained", "-m", "bobs"))
        self.pub(*self.alice("-r", "-t", "alice/retained", "-m", "alices"))
        # alice subscribes to '#': she may read alice/retained, not bob/retained.
        s = self.sub(*self.alice("-t", "#", "-v"))
        self.assertEqual(s.wait_messages(1, 3.0)[:1], ["alice/retained alices"], s.describe())
        self.assertTrue(s.no_more_messages(1, 0.5), s.describe())

    def test_pattern_client_id(self):
        s = self.sub(*self.bob("-t", "devices/#", "-v"))
        self.pub(*self.alice("-i", "dev7", "-t", "devices/dev7/temp", "-m", "21"))
        self.pub(*self.alice("-i", "dev8", "-t", "devices/dev7/temp", "-m", "no"))
        self.assertEqual(s.wait_messages(1, 3.0)[:1], ["devices/dev7/temp 21"], s.describe())
        self.assertTrue(s.no_more_messages(1, 0.5), s.describe())

    def test_pattern_wildcard_client_id_gets_nothing(self):
        # Client id "+" would make devices/%c/# read as devices/+/#.
        s = self.sub(*self.bob("-t", "devices/d1/#", "-v"))
        self.pub("-i", "+", "-t", "devices/d1/x", "-m", "evil")
        self.pub("-i", "d1x", "-t", "devices/d1x/y", "-m", "own")
        self.assertTrue(s.no_more_messages(0, 1.0), s.describe())


class PerListener(SecurityTestCase):
    TEMPLATE = ("per_listener_settings true\n"
                "listener {port} {host}\nallow_anonymous true\n"
                "listener {port2} {host}\nallow_anonymous false\npassword_file {dir}/passwd\n")
    FILES = {"passwd": PASSWD}

    def test_two_listeners(self):
        self.pub("-t", "t", "-m", "anon ok on the first")
        port2 = self.broker.port2
        r = self.pub("-t", "t", "-m", "x", port=port2, check=False)
        self.assertNotEqual(r.returncode, 0, r)
        self.pub("-u", "alice", "-P", "wonderland", "-t", "t", "-m", "1", port=port2)
        r = self.pub("-u", "alice", "-P", "bad", "-t", "t", "-m", "1", port=port2, check=False)
        self.assertNotEqual(r.returncode, 0, r)


class IncludeDir(SecurityTestCase):
    TEMPLATE = "listener {port} {host}\ninclude_dir {dir}/conf.d\n"
    FILES = {"passwd": PASSWD,
             "conf.d/10-auth.conf": "# included\n",
             "conf.d/20-auth.conf": None}

    def setUp(self):
        # The included file names the password file, so it needs the path.
        self.FILES = dict(self.FILES)
        self.FILES["conf.d/20-auth.conf"] = lambda p: open(p, "w").write(
            "allow_anonymous false\npassword_file %s\n" % os.path.join(os.path.dirname(
                os.path.dirname(p)), "passwd"))
        super().setUp()

    def test_included_settings_apply(self):
        r = self.pub("-t", "t", "-m", "x", check=False)
        self.assertNotEqual(r.returncode, 0, r)
        self.pub("-u", "bob", "-P", "builder", "-t", "t", "-m", "1")


class Reload(SecurityTestCase):
    TEMPLATE = ("listener {port} {host}\nallow_anonymous false\npassword_file {dir}/passwd\n"
                "acl_file {dir}/acl\n")
    FILES = {"passwd": PASSWD, "acl": ACL}

    def hup(self):
        os.kill(self.broker.proc.pid, signal.SIGHUP)

    def wait_pub_ok(self, *args, ok=True, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            r = self.pub(*args, check=False)
            if (r.returncode == 0) == ok or time.monotonic() > deadline:
                return r
            time.sleep(0.1)

    def test_new_user_after_sighup_existing_client_stays(self):
        s = self.sub("-u", "alice", "-P", "wonderland", "-t", "alice/#", "-v")
        r = self.pub("-u", "dave", "-P", "d4ve", "-t", "t", "-m", "1", check=False)
        self.assertNotEqual(r.returncode, 0)
        subprocess.run([MOSQ_PASSWD, "-b", self.broker.path("passwd"), "dave", "d4ve"],
                       check=True, timeout=10)
        self.hup()
        r = self.wait_pub_ok("-u", "dave", "-P", "d4ve", "-t", "t", "-m", "1")
        self.assertEqual(r.returncode, 0, r)
        # alice's subscriber was not disconnected: it still gets her messages.
        self.pub("-u", "alice", "-P", "wonderland", "-t", "alice/after", "-m", "still here")
        self.assertEqual(s.wait_messages(1, 3.0)[:1], ["alice/after still here"], s.describe())
        self.assertIsNone(s.proc.poll(), s.describe())

    def test_removed_user_refused_after_sighup(self):
        subprocess.run([MOSQ_PASSWD, "-D", self.broker.path("passwd"), "bob"], check=True,
                       timeout=10)
        self.hup()
        r = self.wait_pub_ok("-u", "bob", "-P", "builder", "-t", "t", "-m", "1", ok=False)
        self.assertNotEqual(r.returncode, 0, r)

    @loopbot_only("mosquitto drops an entry it cannot parse; loopbot keeps the old files")
    def test_bad_file_keeps_old(self):
        with open(self.broker.path("passwd"), "a") as f:
            f.write("broken line without colon\n")
        self.hup()
        time.sleep(0.5)
        self.pub("-u", "alice", "-P", "wonderland", "-t", "t", "-m", "1")
        self.assertIn("passwd:", self.broker.stderr())
        self.assertIn("reload failed", self.broker.stderr())


if __name__ == "__main__":
    unittest.main()
