"""Relayed DISCOVERs at a fixed RATE for SECONDS (open loop, as real clients are: a stalled
server delays every request sent while it is stalled), for random MACs 02:TAG:00:00:hi:lo of
MACHINES machines, to 127.0.0.1:1067 from 127.0.0.1:67 (giaddr 127.0.0.1); prints each
OFFER's latency in microseconds, and a line on standard error with the unanswered count.

Usage: dhcp_latency_client.py SECONDS MACHINES RATE TAG   (TAG: the MAC's second byte, hex)
"""
import random, socket, struct, sys, time
seconds, machines, rate, tag = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4], 16)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 67))          # replies to a relay go to giaddr:67
s.setblocking(False)
relay, cookie = socket.inet_aton("127.0.0.1"), bytes([99, 130, 83, 99, 53, 1, 1, 255])
start = time.perf_counter()
end = start + seconds
next_send, xid, pending, out = start, 0, {}, []
while True:
    now = time.perf_counter()
    if now >= end + 1.0 or (now >= end and not pending):
        break
    while now >= next_send and next_send < end:
        i = random.randrange(machines)
        xid += 1
        mac = bytes([2, tag, 0, 0, i // 256, i % 256])
        packet = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 1, xid, 0, 0, bytes(4),
                             bytes(4), bytes(4), relay, mac + bytes(10), bytes(64), bytes(128))
        pending[xid] = time.perf_counter()
        s.sendto(packet + cookie, ("127.0.0.1", 1067))
        next_send += 1.0 / rate
    # Spin (no sleep): a sleeping client's own wake-up on a VM adds milliseconds that are not
    # the server's.
    while True:
        try:
            reply = s.recv(2048)
        except BlockingIOError:
            break
        sent = pending.pop(struct.unpack("!I", reply[4:8])[0], None)
        if sent is not None:
            out.append(int((time.perf_counter() - sent) * 1e6))
print(" ".join(map(str, out)))
print(f"unanswered {len(pending)}", file=sys.stderr)
