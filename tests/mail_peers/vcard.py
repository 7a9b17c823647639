#!/usr/bin/env python3
"""Reads one vCard from stdin with vobject (PyPI) and prints its fields as JSON:
{"version": "4.0", "fn": [...], "nickname": [...], ...}, each a list of values as vobject
decoded them (unescaped, unfolded)."""

import json
import sys

import vobject

card = vobject.readOne(sys.stdin.read())
out = {"version": card.version.value}
for key, lines in card.contents.items():
    if key in ("version", "begin", "end"):
        continue
    out[key] = [line.value for line in lines]
print(json.dumps(out, ensure_ascii=False))
