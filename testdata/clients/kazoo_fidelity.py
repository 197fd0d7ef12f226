"""kazoo sessions for zkgate's session-fidelity tests (proxy/e2e_fidelity_test.go).

Usage:
  kazoo_fidelity.py watches HOST:PORT ROOT
      Sets an exists watch on ROOT/e (which exists), a data watch on ROOT/d (get) and a
      child watch on ROOT/c (get_children). Prints READY and SID 0x<session>, then reads
      commands from stdin:
        probe   a round trip (sync), then every watcher callback queued so far has run;
                prints EVENTS with what the watchers saw ("none" if nothing)
        report  waits (10 s at most) until every watcher has fired, a round trip, then
                prints EXISTS, DATA, CHILD (the event types each watcher saw, in order),
                SESSION, STATES and DONE, and exits.
  kazoo_fidelity.py writer HOST:PORT ROOT ACKFILE
      Four threads create sequential nodes under ROOT in a loop, each create wrapped in
      KazooRetry. Prints READY and SID 0x<session>. On "stop" from stdin it stops them,
      writes every acknowledged path to ACKFILE (one a line) and prints ACKED, LOSSES
      (ConnectionLoss raised by an attempt, then retried), OTHER (any other error),
      SESSION, STATES and DONE.
"""
import sys
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss
from kazoo.protocol.states import Callback
from kazoo.retry import KazooRetry

mode, hosts, root = sys.argv[1], sys.argv[2], sys.argv[3]
zk = KazooClient(hosts=hosts, timeout=10.0)
states = []
zk.add_listener(lambda state: states.append(str(state)))
zk.start(timeout=15)
sid = zk.client_id[0]


def settle():
    """A round trip on the session, then every watcher callback the client had queued
    before its reply has run (kazoo runs them in order on one thread)."""
    zk.sync(root)
    done = threading.Event()
    zk.handler.dispatch_callback(Callback("watch", done.set, ()))
    done.wait(10)


def finish():
    print("SESSION 0x%x" % zk.client_id[0], flush=True)
    print("STATES", " ".join(states) or "none", flush=True)
    zk.stop()
    zk.close()
    print("DONE", flush=True)


def watches():
    seen = {"e": [], "d": [], "c": []}
    fired = {k: threading.Event() for k in seen}

    def watcher(key):
        def fn(ev):
            seen[key].append(str(ev.type))
            fired[key].set()
        return fn

    if zk.exists(root + "/e", watch=watcher("e")) is None:
        sys.exit("ROOT/e does not exist")
    zk.get(root + "/d", watch=watcher("d"))
    zk.get_children(root + "/c", watch=watcher("c"))
    print("READY", flush=True)
    print("SID 0x%x" % sid, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "probe":
            settle()
            got = ["%s=%s" % (k, ",".join(v)) for k, v in sorted(seen.items()) if v]
            print("EVENTS", " ".join(got) or "none", flush=True)
        elif cmd == "report":
            for ev in fired.values():
                ev.wait(10)
            settle()
            print("EXISTS", ",".join(seen["e"]) or "none", flush=True)
            print("DATA", ",".join(seen["d"]) or "none", flush=True)
            print("CHILD", ",".join(seen["c"]) or "none", flush=True)
            break
    finish()


def writer(ackfile):
    stop = threading.Event()
    lock = threading.Lock()
    acked, losses, other = [], [0], []
    retry = KazooRetry(max_tries=50, delay=0.02, max_delay=0.5)

    def attempt():
        try:
            return zk.create(root + "/k-", b"", sequence=True)
        except ConnectionLoss:
            with lock:
                losses[0] += 1
            raise

    def loop():
        while not stop.is_set():
            try:
                path = retry.copy()(attempt)
            except Exception as e:  # counted: the test fails on any
                with lock:
                    other.append(repr(e))
                return
            with lock:
                acked.append(path)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for th in threads:
        th.start()
    print("READY", flush=True)
    print("SID 0x%x" % sid, flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    for th in threads:
        th.join(30)
    with open(ackfile, "w") as f:
        f.write("\n".join(acked))
    print("ACKED", len(acked), flush=True)
    print("LOSSES", losses[0], flush=True)
    print("OTHER", len(other), " ".join(other[:3]), flush=True)
    finish()


if mode == "watches":
    watches()
elif mode == "writer":
    writer(sys.argv[4])
else:
    sys.exit("unknown mode " + mode)
