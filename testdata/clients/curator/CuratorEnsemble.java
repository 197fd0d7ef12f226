import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.imps.EnsembleTracker;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.ZooKeeper;

/**
 * Curator (5.4) through zkgate with its EnsembleTracker on (the default): the tracker reads
 * /zookeeper/config and replaces the connect string with the members' client addresses,
 * which would take the client past zkgate at its next session expiry. Usage:
 * java CuratorEnsemble HOST:PORT ROOT. Prints a line per step (the connect string after
 * the tracker's first reading, after an injected session expiry, and the new session's
 * server), then WAIT, keeps the new session until it reads a line on stdin, and prints OK;
 * FAIL and exits 1 when a step times out.
 */
public class CuratorEnsemble {
    public static void main(String[] args) throws Exception {
        String connect = args[0], root = args[1];
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(6000)
                .connectionTimeoutMs(15000)
                .retryPolicy(new RetryNTimes(30, 500))
                .build(); // ensembleTracker(true) is the default
        client.start();
        try {
            run(client, root);
        } finally {
            client.close();
        }
    }

    static void run(CuratorFramework client, String root) throws Exception {
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            fail("no connection");
        }
        ZooKeeper zk = client.getZookeeperClient().getZooKeeper();
        long first = zk.getSessionId();
        say("CONNECTED 0x" + Long.toHexString(first) + " " + client.getZookeeperClient().getCurrentConnectionString());

        byte[] config = client.getConfig().forEnsemble(); // getData /zookeeper/config
        say("CONFIG " + new String(config, StandardCharsets.UTF_8).replace("\n", "\\n"));

        EnsembleTracker tracker = tracker(client);
        waitTracker(tracker);
        say("TRACKED " + client.getZookeeperClient().getCurrentConnectionString()
                + " members=" + client.getCurrentConfig().getAllMembers().size());

        // What a session expiry does to Curator: the handle is closed and a new one made
        // from the ensemble provider's (the tracker's) connect string.
        zk.getTestable().injectSessionExpiration();
        say("EXPIRED 0x" + Long.toHexString(first));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        for (;;) {
            ZooKeeper now = client.getZookeeperClient().getZooKeeper();
            if (now != zk && now.getState().isConnected() && now.getSessionId() != 0 && now.getSessionId() != first) {
                zk = now;
                break;
            }
            if (System.nanoTime() > deadline) {
                fail("no new session after the expiry: " + now);
            }
            Thread.sleep(100);
        }
        client.create().creatingParentsIfNeeded().forPath(root + "/after-expiry", "x".getBytes(StandardCharsets.UTF_8));
        client.delete().deletingChildrenIfNeeded().forPath(root);
        say("RECONNECTED 0x" + Long.toHexString(zk.getSessionId()) + " " + client.getZookeeperClient().getCurrentConnectionString()
                + " " + zk);
        waitTracker(tracker);
        say("TRACKED " + client.getZookeeperClient().getCurrentConnectionString()
                + " members=" + client.getCurrentConfig().getAllMembers().size());
        say("WAIT"); // the session stays open until a line on stdin
        new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();
        say("OK");
    }

    // tracker returns the framework's EnsembleTracker (CuratorFrameworkImpl keeps it behind
    // a package-private getter).
    static EnsembleTracker tracker(CuratorFramework client) throws Exception {
        Method m = client.getClass().getDeclaredMethod("getEnsembleTracker");
        m.setAccessible(true);
        EnsembleTracker t = (EnsembleTracker) m.invoke(client);
        if (t == null) {
            fail("the ensemble tracker is off");
        }
        return t;
    }

    // waitTracker waits until the tracker has processed every config read it started (its
    // first read starts in CuratorFramework.start, so one has been processed at least).
    static void waitTracker(EnsembleTracker t) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (t.hasOutstanding()) {
            if (System.nanoTime() > deadline) {
                fail("the ensemble tracker never read the config");
            }
            Thread.sleep(50);
        }
        Thread.sleep(300); // a reset the connection listener starts late, and its answer
        while (t.hasOutstanding()) {
            if (System.nanoTime() > deadline) {
                fail("the ensemble tracker never read the config");
            }
            Thread.sleep(50);
        }
    }

    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static void fail(String why) {
        say("FAIL " + why);
        System.exit(1);
    }
}
