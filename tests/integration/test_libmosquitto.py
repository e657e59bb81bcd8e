"""Runs mosq_client_test (libmosquitto, C) against a broker started here:
pub/sub QoS 0/1/2, retained set/clear, will on abnormal close, persistent
session, takeover, for MQTT v3.1.1 and v5. The program prints one line per
check and exits non-zero if any failed."""

import os
import subprocess
import unittest

from harness import HOST, MOSQ_CLIENT_TEST, BrokerTestCase


@unittest.skipUnless(MOSQ_CLIENT_TEST and os.access(MOSQ_CLIENT_TEST, os.X_OK),
                     "MOSQ_CLIENT_TEST is not set to the built mosq_client_test")
class LibMosquitto(BrokerTestCase):

    def test_libmosquitto_client_behaviours(self):
        try:
            r = subprocess.run([MOSQ_CLIENT_TEST, HOST, str(self.port)], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=60)
        except subprocess.TimeoutExpired as e:
            self.fail("mosq_client_test timed out after 60 s:\n%s" % (e.stdout or ""))
        failed = [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
        checks = [l for l in r.stdout.splitlines() if l.startswith(("ok", "FAIL"))]
        msg = "mosq_client_test exit %d\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
        self.assertEqual(failed, [], msg)
        self.assertEqual(r.returncode, 0, msg)
        self.assertGreaterEqual(len(checks), 60, "too few checks ran:\n" + msg)


if __name__ == "__main__":
    unittest.main()
