#!/usr/bin/env python3
"""A relayed iPXE DISCOVER (as a relay on 127.0.0.1 forwards it: giaddr 127.0.0.1, from port
67) to a DHCP server on 127.0.0.1:PORT, sent every 300 ms until an answer carries a boot file
or SECONDS pass; prints the boot file (option 67, else the file field) or nothing.

Usage: pxe_probe.py PORT MAC SECONDS
"""
import socket, struct, sys, time

port, mac, seconds = int(sys.argv[1]), bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 67))
s.settimeout(0.3)
options = bytes([99, 130, 83, 99, 53, 1, 1])
vendor = b"PXEClient:Arch:00000:UNDI:002001"
options += bytes([60, len(vendor)]) + vendor + bytes([93, 2, 0, 0, 94, 3, 1, 2, 1])
options += bytes([77, 4]) + b"iPXE" + bytes([255])
packet = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 1, 0x5eed, 0, 0, bytes(4), bytes(4),
                     bytes(4), socket.inet_aton("127.0.0.1"), mac + bytes(10), bytes(64), bytes(128))
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.sendto(packet + options, ("127.0.0.1", port))
    try:
        reply = s.recv(2048)
    except socket.timeout:
        continue
    file_field = reply[108:236].split(b"\0")[0]
    i, boot = 240, None
    while i < len(reply) and reply[i] != 255:
        if reply[i] == 0:
            i += 1
            continue
        code, length = reply[i], reply[i + 1]
        if code == 67:
            boot = reply[i + 2:i + 2 + length]
        i += 2 + length
    boot = boot or file_field
    if boot:
        print(boot.decode(errors="replace"))
        break
