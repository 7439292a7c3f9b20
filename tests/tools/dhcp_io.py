#!/usr/bin/env python3
"""dhcp_io.py IFACE BIND_PORT DEST_IP DEST_PORT WAIT HEX...

Test helper for the DHCP namespace tests: sends each HEX payload as one UDP datagram from
0.0.0.0:BIND_PORT (bound to IFACE, broadcast allowed) to DEST_IP:DEST_PORT, then prints every
datagram received within WAIT seconds of the last send as a line "SRC_IP:SRC_PORT HEX".
The messages themselves are built and checked by the Rust test with netbootd's own codec."""
import select
import socket
import sys
import time

iface, bind_port, dest_ip, dest_port, wait = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", int(bind_port)))
for payload in sys.argv[6:]:
    s.sendto(bytes.fromhex(payload), (dest_ip, int(dest_port)))
deadline = time.monotonic() + float(wait)
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    if select.select([s], [], [], left)[0]:
        data, (ip, port) = s.recvfrom(65535)
        print(f"{ip}:{port} {data.hex()}", flush=True)
