#!/usr/bin/env python3
"""An XMPP user for the gateway's tests and benchmark, built on slixmpp.

Logs in (plain text, loopback only), then reads JSON commands from stdin, one per line,
and prints JSON events to stdout, one per line. It stops on {"cmd": "quit"}, at the end of
stdin, or after --deadline seconds, whichever comes first.

Commands:
  {"cmd": "send", "to": JID, "body": TEXT, "id": ID, "receipt": true, "xml": ELEMENT}
      ("xml": one element added to the message, e.g. a business card)
  {"cmd": "blast", "to": JID, "count": N, "prefix": TEXT}   send N messages back to back
  {"cmd": "gateway", "to": DOMAIN, "prompt": TEXT}          XEP-0100 jabber:iq:gateway set
  {"cmd": "disco", "to": JID}                               disco#info
  {"cmd": "ping", "to": JID}                                XEP-0199
  {"cmd": "subscribe", "to": JID}
  {"cmd": "stats"}                                          counts so far
  {"cmd": "quit"}

A message event carries the app platform's payload of a headline, when there is one:
"app" (the attributes of <app xmlns='urn:switchboard:app:1'>) and "app_xml" (the element);
and a business card's: "card_xml" (<card xmlns='urn:switchboard:card:1'>) and "vcard_xml"
(the XEP-0292 <vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>).

Events: online, message, receipt, error, gateway, disco, ping, presence, sent, stats,
iq_error, disconnected.
"""

import argparse
import asyncio
import json
import sys
import threading
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import tostring


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class User(slixmpp.ClientXMPP):
    def __init__(self, jid, password, quiet_messages):
        super().__init__(jid, password)
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.plugin["feature_mechanisms"].unencrypted_scram = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0184")
        self.register_plugin("xep_0199")
        self.quiet = quiet_messages
        self.received = 0
        self.first_at = None
        self.last_at = None
        self.receipts = 0
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message)
        self.add_event_handler("receipt_received", self.on_receipt)
        self.add_event_handler("presence", self.on_presence)
        self.add_event_handler("disconnected", lambda _e: emit(event="disconnected"))

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        emit(event="online", jid=str(self.boundjid))

    def on_message(self, msg):
        if msg["type"] == "error":
            emit(
                event="error",
                id=msg["id"],
                **{"from": str(msg["from"])},
                condition=msg["error"]["condition"],
                text=msg["error"]["text"],
            )
            return
        if not msg["body"]:
            return
        now = time.monotonic()
        self.received += 1
        self.first_at = self.first_at or now
        self.last_at = now
        if not self.quiet:
            # The app platform's payload of a headline, when there is one.
            app = msg.xml.find("{urn:switchboard:app:1}app")
            extra = {}
            if app is not None:
                extra["app"] = dict(app.attrib)
                extra["app_xml"] = tostring(app)
            card = msg.xml.find("{urn:switchboard:card:1}card")
            if card is not None:
                extra["card_xml"] = tostring(card)
            vcard = msg.xml.find("{urn:ietf:params:xml:ns:vcard-4.0}vcard")
            if vcard is not None:
                extra["vcard_xml"] = tostring(vcard)
            emit(
                event="message",
                id=msg["id"],
                type=msg["type"],
                body=msg["body"],
                receipt_requested=bool(msg["request_receipt"]),
                oob=[
                    {"url": x.findtext("{jabber:x:oob}url"), "desc": x.findtext("{jabber:x:oob}desc")}
                    for x in msg.xml.findall("{jabber:x:oob}x")
                ],
                **{"from": str(msg["from"]), "to": str(msg["to"])},
                **extra,
            )

    def on_receipt(self, msg):
        self.receipts += 1
        emit(event="receipt", id=msg["receipt"], **{"from": str(msg["from"])})

    def on_presence(self, pres):
        emit(event="presence", type=pres["type"], **{"from": str(pres["from"])})

    async def command(self, c):
        cmd = c.get("cmd")
        if cmd == "send":
            m = self.make_message(mto=c["to"], mbody=c["body"], mtype=c.get("type", "chat"))
            if c.get("id"):
                m["id"] = c["id"]
            if c.get("receipt"):
                m["request_receipt"] = True
            if c.get("xml"):
                m.append(slixmpp.xmlstream.ET.fromstring(c["xml"]))
            m.send()
            emit(event="sent", id=m["id"])
        elif cmd == "blast":
            start = time.monotonic()
            for i in range(int(c["count"])):
                m = self.make_message(
                    mto=c["to"], mbody="%s %d" % (c.get("prefix", "bench"), i), mtype="chat"
                )
                m.send()
                if i % 200 == 0:
                    await asyncio.sleep(0)
            emit(event="blasted", count=int(c["count"]), seconds=time.monotonic() - start)
        elif cmd == "gateway":
            iq = self.make_iq_set(ito=c["to"])
            q = slixmpp.xmlstream.ET.Element("{jabber:iq:gateway}query")
            p = slixmpp.xmlstream.ET.SubElement(q, "{jabber:iq:gateway}prompt")
            p.text = c["prompt"]
            iq.append(q)
            try:
                r = await iq.send(timeout=10)
                jid = r.xml.find("{jabber:iq:gateway}query/{jabber:iq:gateway}jid")
                emit(event="gateway", jid=jid.text if jid is not None else None)
            except IqError as e:
                emit(event="iq_error", cmd=cmd, condition=e.iq["error"]["condition"],
                     text=e.iq["error"]["text"])
            except IqTimeout:
                emit(event="iq_error", cmd=cmd, condition="timeout", text="")
        elif cmd == "disco":
            try:
                r = await self.plugin["xep_0030"].get_info(jid=c["to"], timeout=10)
                info = r["disco_info"]
                emit(
                    event="disco",
                    identities=[[i[0], i[1]] for i in info["identities"]],
                    features=sorted(info["features"]),
                )
            except IqError as e:
                emit(event="iq_error", cmd=cmd, condition=e.iq["error"]["condition"],
                     text=e.iq["error"]["text"])
            except IqTimeout:
                emit(event="iq_error", cmd=cmd, condition="timeout", text="")
        elif cmd == "ping":
            try:
                rtt = await self.plugin["xep_0199"].ping(jid=c["to"], timeout=10)
                emit(event="ping", ok=True, rtt=rtt)
            except (IqError, IqTimeout) as e:
                emit(event="ping", ok=False, error=str(e))
        elif cmd == "subscribe":
            self.send_presence(pto=c["to"], ptype="subscribe")
        elif cmd == "stats":
            span = (self.last_at - self.first_at) if self.first_at else 0.0
            emit(event="stats", received=self.received, receipts=self.receipts, span=span)
        elif cmd == "quit":
            return False
        return True


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--quiet-messages", action="store_true",
                    help="count received messages without printing each (benchmark)")
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    user = User(args.jid, args.password, args.quiet_messages)
    commands: asyncio.Queue = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            line = line.strip()
            if line:
                loop.call_soon_threadsafe(commands.put_nowait, line)
        loop.call_soon_threadsafe(commands.put_nowait, '{"cmd": "quit"}')

    threading.Thread(target=read_stdin, daemon=True).start()
    user.connect(args.host, args.port)

    async def serve():
        while True:
            line = await commands.get()
            try:
                c = json.loads(line)
            except ValueError:
                emit(event="bad_command", line=line)
                continue
            if not await user.command(c):
                return

    try:
        await asyncio.wait_for(serve(), timeout=args.deadline)
    except asyncio.TimeoutError:
        emit(event="deadline")
    user.disconnect()
    await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
