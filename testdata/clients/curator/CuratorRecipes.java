import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.curator.RetryPolicy;
import org.apache.curator.RetrySleeper;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.recipes.watch.PersistentWatcher;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.data.Stat;

/**
 * Curator's recipes (5.4) for a bounded run while the test injects member faults.
 * Usage: java CuratorRecipes CONNECT ROOT SECONDS VERIFY_CONNECT.
 *
 * Nine CuratorFrameworks on CONNECT, each with its own ConnectionStateListener: two
 * LeaderLatch participants on one path, two InterProcessMutex contenders (hold about 50 ms
 * each time), two SharedCount incrementers, a CuratorCache on ROOT/tree, a
 * PersistentWatcher (not recursive) on ROOT/watched, and the writer that changes both.
 *
 * Prints "READY {role: session id}" once every recipe runs (the test times its faults from
 * it), an "EVENT" line per connection state change and leadership change, then after
 * SECONDS "RESULT {json}": the counts, and the checks made with a fresh client on
 * VERIFY_CONNECT (the members themselves). "FAIL why" and exit 1 when it cannot run.
 */
public class CuratorRecipes {
    static final long t0 = System.nanoTime();
    static volatile boolean running = true;

    /** One CuratorFramework and the connection states its listener saw. */
    static final class Client {
        final String role;
        final CuratorFramework fw;
        final CountingRetry retry = new CountingRetry();
        final AtomicInteger suspended = new AtomicInteger(), lost = new AtomicInteger(),
                reconnected = new AtomicInteger(), readOnly = new AtomicInteger();

        Client(String role, String connect) {
            this.role = role;
            fw = CuratorFrameworkFactory.builder()
                    .connectString(connect)
                    .sessionTimeoutMs(4000) // the test ensemble's maximum (20 ticks of 200 ms)
                    .connectionTimeoutMs(15000)
                    .retryPolicy(retry)
                    .build();
            fw.getConnectionStateListenable().addListener((c, s) -> {
                switch (s) {
                    case SUSPENDED: suspended.incrementAndGet(); break;
                    case LOST: lost.incrementAndGet(); break;
                    case RECONNECTED: reconnected.incrementAndGet(); break;
                    case READ_ONLY: readOnly.incrementAndGet(); break;
                    default: break;
                }
                event(role + " " + s + " session=0x" + Long.toHexString(sessionId(c)));
            });
        }

        long sessionId() { return sessionId(fw); }

        static long sessionId(CuratorFramework c) {
            try {
                return c.getZookeeperClient().getZooKeeper().getSessionId();
            } catch (Exception e) {
                return 0;
            }
        }
    }

    /**
     * RetryNTimes that tells the calling thread whether its operation was retried: a
     * conditional write that is retried after a connection loss and then fails may have
     * been applied (its outcome is unknown, as straight at a member).
     */
    static final class CountingRetry implements RetryPolicy {
        final RetryNTimes inner = new RetryNTimes(100, 100);
        final ThreadLocal<boolean[]> retried = ThreadLocal.withInitial(() -> new boolean[1]);
        final AtomicLong retries = new AtomicLong();

        @Override
        public boolean allowRetry(int retryCount, long elapsedTimeMs, RetrySleeper sleeper) {
            retried.get()[0] = true;
            retries.incrementAndGet();
            return inner.allowRetry(retryCount, elapsedTimeMs, sleeper);
        }

        /** clear starts an operation; took says whether it was retried since. */
        void clear() { retried.get()[0] = false; }

        boolean took() { return retried.get()[0]; }
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0], root = args[1], verifyConnect = args[3];
        long seconds = Long.parseLong(args[2]);
        try {
            run(connect, root, seconds, verifyConnect);
        } catch (Throwable e) {
            say("FAIL " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0); // recipe threads Curator leaves behind do not hold the JVM
    }

    static void run(String connect, String root, long seconds, String verifyConnect) throws Exception {
        String[] roles = {"latch-a", "latch-b", "lock-a", "lock-b", "count-a", "count-b", "cache", "watcher", "writer"};
        Map<String, Client> clients = new LinkedHashMap<>();
        for (String r : roles) {
            Client c = new Client(r, connect);
            clients.put(r, c);
            c.fw.start();
        }
        for (Client c : clients.values()) {
            if (!c.fw.blockUntilConnected(30, TimeUnit.SECONDS)) {
                throw new IllegalStateException(c.role + ": no connection in 30 s");
            }
        }
        Client writer = clients.get("writer");
        String tree = root + "/tree", watched = root + "/watched", owner = root + "/lockowner";
        writer.fw.create().creatingParentsIfNeeded().forPath(tree, new byte[0]);
        writer.fw.create().forPath(watched, bytes("0"));
        writer.fw.create().forPath(owner, new byte[0]);

        // Leader latch: leadership changes from the callbacks, and a sampler that looks
        // at both participants' belief.
        AtomicInteger leaders = new AtomicInteger(), leaderships = new AtomicInteger(),
                twoLeaderCallbacks = new AtomicInteger();
        List<LeaderLatch> latches = new ArrayList<>();
        for (String r : new String[] {"latch-a", "latch-b"}) {
            LeaderLatch l = new LeaderLatch(clients.get(r).fw, root + "/latch", r);
            l.addListener(new LeaderLatchListener() {
                @Override
                public void isLeader() {
                    leaderships.incrementAndGet();
                    if (leaders.incrementAndGet() > 1) {
                        twoLeaderCallbacks.incrementAndGet();
                    }
                    event(r + " LEADER");
                }

                @Override
                public void notLeader() {
                    leaders.decrementAndGet();
                    event(r + " NOT_LEADER");
                }
            });
            l.start();
            latches.add(l);
        }

        SharedCount[] counts = new SharedCount[2];
        for (int i = 0; i < 2; i++) {
            counts[i] = new SharedCount(clients.get(i == 0 ? "count-a" : "count-b").fw, root + "/count", 0);
            counts[i].start();
        }

        CountDownLatch cacheReady = new CountDownLatch(1);
        CuratorCache cache = CuratorCache.build(clients.get("cache").fw, tree);
        cache.listenable().addListener(CuratorCacheListener.builder().forInitialized(cacheReady::countDown).build());
        cache.start();

        AtomicLong watchEvents = new AtomicLong(), otherWatchEvents = new AtomicLong();
        PersistentWatcher pw = new PersistentWatcher(clients.get("watcher").fw, watched, false);
        pw.getListenable().addListener(e -> {
            if (e.getType() == Watcher.Event.EventType.NodeDataChanged) {
                watchEvents.incrementAndGet();
            } else {
                otherWatchEvents.incrementAndGet();
            }
        });
        pw.start();

        if (!cacheReady.await(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException("CuratorCache not initialised in 30 s");
        }
        waitUntil(30, "a leader", () -> latches.get(0).hasLeadership() || latches.get(1).hasLeadership());
        // The persistent watch is registered in the background; a write before it is in
        // place would not be counted.
        waitUntil(30, "the persistent watch", () -> {
            writer.fw.setData().forPath(watched, bytes("0"));
            Thread.sleep(50);
            return watchEvents.get() > 0;
        });
        long watchBase = watchEvents.get();
        int watchedBase = writer.fw.checkExists().forPath(watched).getVersion();

        StringBuilder ready = new StringBuilder("{");
        for (Client c : clients.values()) {
            ready.append(ready.length() > 1 ? "," : "").append('"').append(c.role).append("\":\"0x")
                    .append(Long.toHexString(c.sessionId())).append('"');
        }
        say("READY " + ready.append('}'));
        long start = System.nanoTime();

        List<Thread> threads = new ArrayList<>();

        // Two leaders at once, as their owners believe it, sampled every 5 ms.
        AtomicLong twoLeaderSamples = new AtomicLong(), samples = new AtomicLong();
        threads.add(loop("latch-sampler", () -> {
            samples.incrementAndGet();
            if (latches.get(0).hasLeadership() && latches.get(1).hasLeadership()) {
                twoLeaderSamples.incrementAndGet();
            }
            Thread.sleep(5);
        }));

        // Lock exclusion: an in-JVM count of holders, and a znode each holder writes on
        // entry and must read back unchanged before it lets go.
        AtomicInteger holders = new AtomicInteger();
        AtomicLong acquired = new AtomicLong(), lockTimeouts = new AtomicLong(), lockErrors = new AtomicLong(),
                jvmViolations = new AtomicLong(), znodeViolations = new AtomicLong();
        for (String r : new String[] {"lock-a", "lock-b"}) {
            InterProcessMutex m = new InterProcessMutex(clients.get(r).fw, root + "/lock");
            CuratorFramework fw = clients.get(r).fw;
            long[] seq = {0};
            threads.add(loop(r, () -> {
                boolean got;
                try {
                    got = m.acquire(5, TimeUnit.SECONDS);
                } catch (Exception e) {
                    lockErrors.incrementAndGet();
                    event(r + " acquire: " + e);
                    Thread.sleep(20);
                    return;
                }
                if (!got) {
                    lockTimeouts.incrementAndGet();
                    return;
                }
                holders.incrementAndGet();
                try {
                    acquired.incrementAndGet();
                    if (holders.get() > 1) {
                        jvmViolations.incrementAndGet();
                        event(r + " LOCK_VIOLATION holders>1");
                    }
                    String mine = r + ":" + (++seq[0]);
                    try {
                        fw.setData().forPath(owner, bytes(mine));
                        Thread.sleep(50);
                        String now = new String(fw.getData().forPath(owner), StandardCharsets.UTF_8);
                        if (!now.equals(mine)) {
                            znodeViolations.incrementAndGet();
                            event(r + " LOCK_VIOLATION owner " + now + " want " + mine);
                        }
                    } catch (KeeperException | IllegalStateException e) {
                        lockErrors.incrementAndGet();
                        event(r + " in lock: " + e);
                    }
                } finally {
                    holders.decrementAndGet(); // before release: the other may hold it next
                    try {
                        m.release();
                    } catch (Exception e) {
                        lockErrors.incrementAndGet();
                        event(r + " release: " + e);
                    }
                }
            }));
        }

        // SharedCount: each success is one increment; a false or a failure after a retry
        // is an unknown outcome.
        AtomicLong incSuccess = new AtomicLong(), incRejected = new AtomicLong(), incUnknown = new AtomicLong(),
                incErrors = new AtomicLong();
        for (int i = 0; i < 2; i++) {
            SharedCount sc = counts[i];
            Client c = clients.get(i == 0 ? "count-a" : "count-b");
            threads.add(loop(c.role, () -> {
                VersionedValue<Integer> v = sc.getVersionedValue();
                c.retry.clear();
                try {
                    if (sc.trySetCount(v, v.getValue() + 1)) {
                        incSuccess.incrementAndGet();
                        return;
                    }
                    if (c.retry.took()) {
                        incUnknown.incrementAndGet();
                    } else {
                        incRejected.incrementAndGet();
                    }
                } catch (Exception e) {
                    incErrors.incrementAndGet();
                    incUnknown.incrementAndGet();
                    event(c.role + " trySetCount: " + e);
                }
                Thread.sleep(10);
            }));
        }

        // The writer: creates, updates and deletes 16 children of ROOT/tree in turn, and
        // updates ROOT/watched, every 20 ms.
        AtomicLong treeWrites = new AtomicLong(), watchedWrites = new AtomicLong(), writeConflicts = new AtomicLong(),
                writeErrors = new AtomicLong();
        long[] step = {0};
        threads.add(loop("writer", () -> {
            long i = step[0]++;
            String child = tree + "/n" + (i % 16);
            byte[] data = bytes(Long.toString(i));
            try {
                switch ((int) ((i / 16) % 3)) {
                    case 0: writer.fw.create().orSetData().forPath(child, data); break;
                    case 1: writer.fw.setData().forPath(child, data); break;
                    default: writer.fw.delete().forPath(child); break;
                }
                treeWrites.incrementAndGet();
            } catch (KeeperException.NoNodeException | KeeperException.NodeExistsException e) {
                writeConflicts.incrementAndGet(); // a retried write whose first try was applied
            } catch (Exception e) {
                writeErrors.incrementAndGet();
                event("writer tree: " + e);
            }
            try {
                writer.fw.setData().forPath(watched, data);
                watchedWrites.incrementAndGet();
            } catch (Exception e) {
                writeErrors.incrementAndGet();
                event("writer watched: " + e);
            }
            Thread.sleep(20);
        }));

        for (Thread th : threads) {
            th.start();
        }
        Thread.sleep(Math.max(0, TimeUnit.SECONDS.toMillis(seconds) - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start)));
        running = false;
        for (Thread th : threads) {
            th.join(30000);
            if (th.isAlive()) {
                throw new IllegalStateException(th.getName() + " still running 30 s after the end");
            }
        }
        event("STOPPED");

        // Checks with a fresh client straight at the members.
        Client verify = new Client("verify", verifyConnect);
        verify.fw.start();
        if (!verify.fw.blockUntilConnected(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException("verify: no connection");
        }
        long settleStart = System.nanoTime();
        Map<String, String> server = new TreeMap<>(), cached = new TreeMap<>();
        boolean cacheEqual = false;
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15); ; ) {
            server = readTree(verify.fw, tree);
            cached = new TreeMap<>();
            for (ChildData d : cache.stream().toArray(ChildData[]::new)) {
                cached.put(d.getPath(), d.getData() == null ? "" : new String(d.getData(), StandardCharsets.UTF_8));
            }
            if (server.equals(cached)) {
                cacheEqual = true;
                break;
            }
            if (System.nanoTime() > deadline) {
                break;
            }
            Thread.sleep(100);
        }
        long cacheSettleMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - settleStart);

        int watchedChanges = verify.fw.checkExists().forPath(watched).getVersion() - watchedBase;
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                watchEvents.get() - watchBase < watchedChanges && System.nanoTime() < deadline; ) {
            Thread.sleep(50);
        }
        long watchSeen = watchEvents.get() - watchBase;

        int countFinal = ByteBuffer.wrap(verify.fw.getData().forPath(root + "/count")).getInt();
        waitUntil(15, "one leader after the run", () -> latches.get(0).hasLeadership() ^ latches.get(1).hasLeadership());

        StringBuilder j = new StringBuilder("{\"clients\":{");
        boolean first = true;
        for (Client c : clients.values()) {
            j.append(first ? "" : ",").append('"').append(c.role).append("\":{\"suspended\":").append(c.suspended)
                    .append(",\"lost\":").append(c.lost).append(",\"reconnected\":").append(c.reconnected)
                    .append(",\"read_only\":").append(c.readOnly).append(",\"retries\":").append(c.retry.retries)
                    .append(",\"session\":\"0x").append(Long.toHexString(c.sessionId())).append("\"}");
            first = false;
        }
        j.append("}");
        field(j, "leaderships", leaderships.get());
        field(j, "two_leader_callbacks", twoLeaderCallbacks.get());
        field(j, "two_leader_samples", twoLeaderSamples.get());
        field(j, "leader_samples", samples.get());
        field(j, "lock_acquired", acquired.get());
        field(j, "lock_timeouts", lockTimeouts.get());
        field(j, "lock_errors", lockErrors.get());
        field(j, "lock_violations_jvm", jvmViolations.get());
        field(j, "lock_violations_znode", znodeViolations.get());
        field(j, "count_final", countFinal);
        field(j, "count_success", incSuccess.get());
        field(j, "count_unknown", incUnknown.get());
        field(j, "count_rejected", incRejected.get());
        field(j, "count_errors", incErrors.get());
        field(j, "tree_writes", treeWrites.get());
        field(j, "watched_writes", watchedWrites.get());
        field(j, "write_conflicts", writeConflicts.get());
        field(j, "write_errors", writeErrors.get());
        field(j, "cache_equal", cacheEqual);
        field(j, "cache_settle_ms", cacheSettleMs);
        field(j, "cache_nodes", cached.size());
        field(j, "server_nodes", server.size());
        field(j, "watched_changes", watchedChanges);
        field(j, "watch_events", watchSeen);
        field(j, "watch_other_events", otherWatchEvents.get());
        if (!cacheEqual) {
            j.append(",\"cache_diff\":\"").append(diff(server, cached)).append('"');
        }
        say("RESULT " + j.append('}'));

        verify.fw.close();
        pw.close();
        cache.close();
        for (SharedCount sc : counts) {
            sc.close();
        }
        for (LeaderLatch l : latches) {
            l.close();
        }
        for (Client c : clients.values()) {
            c.fw.close();
        }
    }

    interface Step {
        void run() throws Exception;
    }

    /** loop runs step until the run ends; an escaping exception ends the JVM with FAIL. */
    static Thread loop(String name, Step step) {
        Thread th = new Thread(() -> {
            try {
                while (running) {
                    step.run();
                }
            } catch (Throwable e) {
                say("FAIL " + name + ": " + e);
                e.printStackTrace();
                System.exit(1);
            }
        }, name);
        th.setDaemon(true);
        return th;
    }

    interface Cond {
        boolean test() throws Exception;
    }

    static void waitUntil(long seconds, String what, Cond c) throws Exception {
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds); !c.test(); ) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("timed out after " + seconds + " s waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    /** readTree is path -> data for path and everything under it. */
    static Map<String, String> readTree(CuratorFramework c, String path) throws Exception {
        Map<String, String> out = new TreeMap<>();
        List<String> todo = new ArrayList<>(List.of(path));
        while (!todo.isEmpty()) {
            String p = todo.remove(todo.size() - 1);
            Stat st = new Stat();
            byte[] d;
            try {
                d = c.getData().storingStatIn(st).forPath(p);
            } catch (KeeperException.NoNodeException e) {
                continue;
            }
            out.put(p, d == null ? "" : new String(d, StandardCharsets.UTF_8));
            if (st.getNumChildren() > 0) {
                for (String ch : c.getChildren().forPath(p)) {
                    todo.add(p + "/" + ch);
                }
            }
        }
        return out;
    }

    static String diff(Map<String, String> server, Map<String, String> cached) {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<String, String> e : server.entrySet()) {
            String c = cached.get(e.getKey());
            if (!e.getValue().equals(c)) {
                b.append(e.getKey()).append(" server=").append(e.getValue()).append(" cache=").append(c).append("; ");
            }
        }
        for (String k : cached.keySet()) {
            if (!server.containsKey(k)) {
                b.append(k).append(" only in cache; ");
            }
        }
        return b.toString();
    }

    static void field(StringBuilder j, String k, Object v) {
        j.append(",\"").append(k).append("\":").append(v);
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static void event(String what) {
        say(String.format("EVENT %.3f %s", (System.nanoTime() - t0) / 1e9, what));
    }

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}
