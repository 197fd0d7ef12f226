"""A kazoo session that zkgate moves to another member: it holds an ephemeral and a data
watch, then waits (the test kills or pauses its member meanwhile) and reports what it
saw. Usage: python3 kazoo_move.py HOST:PORT ROOT. Prints READY 0x<session>, then reads
lines from stdin: "write" sets ROOT without waiting for the answer; "go" prints SESSION,
EPHEMERAL, WATCH and STATES lines and DONE, and exits."""
import sys
import threading

from kazoo.client import KazooClient

hosts, root = sys.argv[1], sys.argv[2]
zk = KazooClient(hosts=hosts, timeout=10.0)
states = []
zk.add_listener(lambda state: states.append(str(state)))
zk.start(timeout=15)
sid = zk.client_id[0]
zk.create(root + "/eph", b"e", ephemeral=True)
fired = threading.Event()
events = []


def watcher(ev):
    events.append(ev)
    fired.set()


zk.get(root, watch=watcher)
print("READY 0x%x" % sid, flush=True)
for line in sys.stdin:
    if line.strip() == "write":
        zk.set_async(root, b"w")
    else:
        break
zk.retry(zk.exists, root)  # back on a session, if the client had to reconnect
print("SESSION 0x%x" % zk.client_id[0], flush=True)
_, stat = zk.get(root + "/eph")
print("EPHEMERAL owner=0x%x" % stat.ephemeralOwner, flush=True)
fired.wait(10)
print("WATCH", " ".join(str(e.type) for e in events), flush=True)
print("STATES", " ".join(states[1:]) or "none", flush=True)
zk.stop()
zk.close()
print("DONE", flush=True)
