#!/usr/bin/env python3
"""Turns `nft --debug=mnl` output (stdin) into one line per nf_tables message:
`MSGTYPE FAMILY HEX`, HEX being the message's attributes after nfgenmsg, padding included.
Used by scripts/nft-golden.sh."""
import re, sys
text = re.sub(r'\x1b\[[0-9;]*m', '', sys.stdin.read())
msgs, cur = [], None
for line in text.splitlines():
    if re.match(r'\|\s+(\d+)\s+\|\s+\|\s+message length', line):
        cur = {'type': None, 'body': b'', 'fam': None}; msgs.append(cur); continue
    m = re.match(r'\|\s+(\d+)\s+\|\s+(\S+)\s+\|\s+\|\s+type \| flags', line)
    if m and cur is not None: cur['type'] = int(m.group(1)); continue
    m = re.match(r'\|\s+([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2})\s+\|\s+\|\s+extra header', line)
    if m and cur is not None: cur['fam'] = int(m.group(1), 16); continue
    m = re.match(r'\|(\d{5})\|(..)\|(\d{5})\|', line)
    if m and cur is not None:
        ln, fl, ty = int(m.group(1)), m.group(2), int(m.group(3))
        if 'N' in fl: ty |= 0x8000
        if 'B' in fl: ty |= 0x4000
        cur['body'] += ln.to_bytes(2, 'little') + ty.to_bytes(2, 'little'); continue
    m = re.match(r'\|\s+((?:[0-9a-f]{2} ){3}[0-9a-f]{2})\s+\|\s+\|\s+data', line)
    if m and cur is not None: cur['body'] += bytes.fromhex(m.group(1).replace(' ', '')); continue
for m in msgs:
    if m['type'] is not None and (m['type'] >> 8) == 10 and m['body']:
        print(m['type'] & 0xff, m['fam'], m['body'].hex())
