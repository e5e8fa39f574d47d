"""The official OpenTok Python SDK, unchanged but for its API URL, against a real Signalbox
relay: create a session, mint tokens the SDK signs itself (JWT and legacy T1), join with
`signalbox listen`, signal everyone and one connection, force a disconnect, and the SDK's
errors for bad credentials and oversized signals.

Run by scripts/vonage_sdk_test.sh (which makes a virtualenv with `opentok` from PyPI):
    python tests/vonage/test_opentok_sdk.py path/to/signalbox
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import unittest

import opentok
import requests
from opentok.exceptions import AuthError, OpenTokException, RequestError

SIGNALBOX = sys.argv.pop(1) if len(sys.argv) > 1 else "target/debug/signalbox"
WAIT = 15


class Proc:
    """A process whose stdout lines arrive on a queue."""

    def __init__(self, args, env):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self):
        return self.lines.get(timeout=WAIT)

    def json(self):
        return json.loads(self.line())

    def until(self, event):
        while True:
            v = self.json()
            if v["event"] == event:
                return v

    def stop(self):
        self.p.kill()
        self.p.wait()
        self.p.stdout.close()


class OpenTokSdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = tempfile.mkdtemp()
        cls.env = dict(os.environ, SIGNALBOX_HOME=cls.home, RUST_LOG="warn")
        cls.relay = Proc([SIGNALBOX, "relay", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"], cls.env)
        info = {}
        while "moderator invite" not in info:
            key, _, value = cls.relay.line().partition(": ")
            info[key] = value
        cls.quic = info["quic"]
        cls.fp = info["fingerprint"]
        cls.api_url = "http://" + info["http"]
        out = subprocess.run([SIGNALBOX, "credentials"], env=cls.env, capture_output=True, text=True, check=True)
        creds = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
        cls.key, cls.secret = creds["api_key"], creds["api_secret"]
        cls.sdk = opentok.Client(cls.key, cls.secret, api_url=cls.api_url)

    @classmethod
    def tearDownClass(cls):
        cls.relay.stop()

    def listen(self, session_id, token):
        invite = f"signalbox://{self.quic}/{session_id}?fp={self.fp}&token={token}"
        listener = Proc([SIGNALBOX, "listen", "--invite", invite, "--json", "--name", "sdk-user"], self.env)
        self.addCleanup(listener.stop)
        connected = listener.json()
        self.assertEqual(connected["event"], "connected")
        return listener, connected["me"]

    def test_session_tokens_signals_and_disconnect(self):
        session = self.sdk.create_session()
        self.assertTrue(session.session_id.startswith("2_"))
        token = session.generate_token(role=opentok.Roles.moderator, data="userId=42")
        listener, me = self.listen(session.session_id, token)
        self.assertEqual(me["role"], "moderator")
        self.assertEqual(me["data"], "userId=42")

        self.sdk.send_signal(session.session_id, {"type": "chat", "data": "hello from the server"})
        s = listener.until("signal")
        self.assertEqual((s["from"], s["type"], s["data"], s["to_all"]), (None, "chat", "hello from the server", True))

        self.sdk.send_signal(session.session_id, {"type": "dm", "data": "just you"}, me["id"])
        s = listener.until("signal")
        self.assertEqual((s["from"], s["data"], s["to_all"]), (None, "just you", False))

        # An oversized signal: the SDK's error carries the 413.
        with self.assertRaises(RequestError) as err:
            self.sdk.send_signal(session.session_id, {"type": "big", "data": "x" * 9000})
        self.assertIn(413, err.exception.args)

        # Vonage's connection list (a REST call the SDKs sign; made here with the SDK's own headers).
        listed = requests.get(
            f"{self.api_url}/v2/project/{self.key}/session/{session.session_id}/connection",
            headers=self.sdk.get_headers(),
            timeout=WAIT,
        )
        self.assertEqual(listed.status_code, 200)
        items = listed.json()["items"]
        self.assertEqual([i["connectionId"] for i in items], [me["id"]])
        self.assertEqual(items[0]["connectionState"], "Connected")

        self.sdk.force_disconnect(session.session_id, me["id"])
        gone = listener.until("disconnected")
        self.assertEqual(gone["reason"], "forceDisconnected")

    def test_legacy_t1_tokens_join_too(self):
        session = self.sdk.create_session()
        token = self.sdk.generate_token(session.session_id, role=opentok.Roles.subscriber, use_jwt=False)
        self.assertTrue(token.startswith("T1=="))
        _, me = self.listen(session.session_id, token)
        self.assertEqual(me["role"], "subscriber")

    def test_bad_credentials_are_refused_as_vonage_refuses_them(self):
        session = self.sdk.create_session()
        token = session.generate_token()
        _, me = self.listen(session.session_id, token)
        wrong = opentok.Client(self.key, "0" * 40, api_url=self.api_url)
        with self.assertRaises(AuthError):
            wrong.force_disconnect(session.session_id, me["id"])
        with self.assertRaises(OpenTokException) as err:
            wrong.create_session()
        self.assertIn("invalid credentials", str(err.exception))
        with self.assertRaises(RequestError) as err:
            wrong.send_signal(session.session_id, {"type": "t", "data": "x"})
        self.assertIn(403, err.exception.args)
        # A token signed with the wrong secret does not join.
        bad_token = wrong.generate_token(session.session_id)
        invite = f"signalbox://{self.quic}/{session.session_id}?fp={self.fp}&token={bad_token}"
        out = subprocess.run([SIGNALBOX, "listen", "--invite", invite, "--count", "0"], env=self.env, capture_output=True, text=True, timeout=WAIT)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("refused", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
