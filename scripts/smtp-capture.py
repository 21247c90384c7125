#!/usr/bin/env python3
"""A capturing SMTP server for tests: accepts every message and writes it to a folder.

    scripts/smtp-capture.py PORT DIR [--fail-first N]

Listens on 127.0.0.1:PORT (aiosmtpd, from PyPI). Each accepted message becomes
DIR/<seq>.eml (the DATA bytes exactly as received, after dot-unstuffing) and DIR/<seq>.json
({"mail_from": ..., "rcpt_tos": [...], "auth_login": ...}), seq counting from 1. The .json is
written before the .eml and both by rename, so a reader that sees N.eml sees all of it and its
envelope. With --fail-first N the first N messages are answered "451 4.3.0 try again later" at
the end of DATA and not stored, so tests can check retries. No AUTH is needed; AUTH PLAIN or
LOGIN with any credentials is accepted too (without TLS), and the login is recorded. Logs to
stderr; stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError:
    sys.exit("smtp-capture.py: aiosmtpd is missing: python3 -m pip install aiosmtpd")

log = logging.getLogger("smtp-capture")


def write_atomically(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Capture:
    """The aiosmtpd handler: counts DATA commands, fails the first ones, stores the rest."""

    def __init__(self, folder, fail_first):
        self.folder = folder
        self.fail_left = fail_first
        self.seq = 0

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            log.info("DATA from %s refused on purpose (%d more to refuse)",
                     envelope.mail_from, self.fail_left)
            return "451 4.3.0 try again later"
        self.seq += 1
        base = os.path.join(self.folder, str(self.seq))
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        login = session.auth_data.login if session.authenticated and session.auth_data else None
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_login": login,
        }
        write_atomically(base + ".json", json.dumps(meta).encode())
        write_atomically(base + ".eml", raw)
        log.info("stored %s.eml: %d bytes from %s to %s",
                 self.seq, len(raw), envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 2.0.0 OK"


def accept_any(server, session, envelope, mechanism, auth_data):
    # auth_data is a LoginPassword; keeping it makes session.auth_data.login the login.
    return AuthResult(success=True, auth_data=auth_data)


async def main():
    parser = argparse.ArgumentParser(description="Capturing SMTP server for tests")
    parser.add_argument("port", type=int)
    parser.add_argument("dir")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="answer the first N DATA commands with 451")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s smtp-capture: %(message)s")
    mail_log = logging.getLogger("mail.log")  # aiosmtpd's own: per-connection chatter
    mail_log.setLevel(logging.WARNING)
    mail_log.addFilter(lambda r: "login_data is deprecated" not in r.getMessage())

    os.makedirs(args.dir, exist_ok=True)
    handler = Capture(args.dir, args.fail_first)

    def factory():
        return SMTP(handler, hostname="smtp-capture.test", enable_SMTPUTF8=True,
                    decode_data=False, auth_required=False, auth_require_tls=False,
                    authenticator=accept_any)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=args.port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on 127.0.0.1:%d, writing to %s, failing the first %d",
             args.port, args.dir, args.fail_first)
    await stop.wait()
    server.close()
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(main())
