package proxy_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/proxy"
)

// Curator's recipes under member faults (issue 23 item 8): CuratorRecipes.java runs two
// LeaderLatch participants, two InterProcessMutex contenders, two SharedCount
// incrementers, a CuratorCache, a PersistentWatcher and their writer, each on its own
// CuratorFramework, for recipesRunFor while the test kills the follower under most of
// its sessions (and starts it again), then SIGSTOPs the other follower for 3 s. Once
// straight at the members (the baseline), once through zkgate with its defaults.

const recipesRunFor = 25 * time.Second

// recipesSchedule is when each fault starts and ends, from the program's READY line.
var recipesSchedule = struct{ kill, restart, pause, resume time.Duration }{
	kill: 5 * time.Second, restart: 8 * time.Second, pause: 14 * time.Second, resume: 17 * time.Second,
}

// The roles whose clients must see no SUSPENDED through zkgate. The cache's and the
// watcher's clients hold persistent (recursive) watches, which zkgate closes instead of
// moving when the ensemble changed while the session moved: ZooKeeper 3.8 re-registers
// them with no catch-up, and only a reconnect makes Curator resync.
var recipesStrictRoles = []string{"latch-a", "latch-b", "lock-a", "lock-b", "count-a", "count-b", "writer"}
var recipesWatchRoles = []string{"cache", "watcher"}

// recipesClient is one CuratorFramework's connection states, as its listener counted them.
type recipesClient struct {
	Suspended   int    `json:"suspended"`
	Lost        int    `json:"lost"`
	Reconnected int    `json:"reconnected"`
	ReadOnly    int    `json:"read_only"`
	Retries     int    `json:"retries"`
	Session     string `json:"session"`
}

// recipesResult is CuratorRecipes.java's RESULT line.
type recipesResult struct {
	Clients             map[string]recipesClient `json:"clients"`
	Leaderships         int                      `json:"leaderships"`
	TwoLeaderCallbacks  int                      `json:"two_leader_callbacks"`
	TwoLeaderSamples    int                      `json:"two_leader_samples"`
	LeaderSamples       int                      `json:"leader_samples"`
	LockAcquired        int                      `json:"lock_acquired"`
	LockTimeouts        int                      `json:"lock_timeouts"`
	LockErrors          int                      `json:"lock_errors"`
	LockViolationsJVM   int                      `json:"lock_violations_jvm"`
	LockViolationsZnode int                      `json:"lock_violations_znode"`
	CountFinal          int                      `json:"count_final"`
	CountSuccess        int                      `json:"count_success"`
	CountUnknown        int                      `json:"count_unknown"`
	CountRejected       int                      `json:"count_rejected"`
	CountErrors         int                      `json:"count_errors"`
	TreeWrites          int                      `json:"tree_writes"`
	WatchedWrites       int                      `json:"watched_writes"`
	WriteConflicts      int                      `json:"write_conflicts"`
	WriteErrors         int                      `json:"write_errors"`
	CacheEqual          bool                     `json:"cache_equal"`
	CacheSettleMs       int                      `json:"cache_settle_ms"`
	CacheNodes          int                      `json:"cache_nodes"`
	ServerNodes         int                      `json:"server_nodes"`
	CacheDiff           string                   `json:"cache_diff"`
	WatchedChanges      int                      `json:"watched_changes"`
	WatchEvents         int                      `json:"watch_events"`
	WatchOtherEvents    int                      `json:"watch_other_events"`

	exposure map[string]int // by role: the faults of the member the role's session was on
}

// summary is one line of the figures the issue asks for: per client SUSPENDED, LOST,
// RECONNECTED and the faults of its member (F), then the recipes' checks.
func (r *recipesResult) summary() string {
	var b strings.Builder
	roles := make([]string, 0, len(r.Clients))
	for role := range r.Clients {
		roles = append(roles, role)
	}
	sort.Strings(roles)
	for _, role := range roles {
		c := r.Clients[role]
		fmt.Fprintf(&b, "%s S%d/L%d/R%d F%d ", role, c.Suspended, c.Lost, c.Reconnected, r.exposure[role])
	}
	fmt.Fprintf(&b, "| leaderships %d, two leaders %d samples (of %d) %d callbacks | locks %d acquired, %d violations (jvm %d, znode %d), %d errors, %d timeouts"+
		" | count %d, %d successes, %d unknown | cache equal %v (%d nodes, settled in %d ms) | watcher %d events of %d changes | writes %d tree %d watched, %d errors",
		r.Leaderships, r.TwoLeaderSamples, r.LeaderSamples, r.TwoLeaderCallbacks,
		r.LockAcquired, r.LockViolationsJVM+r.LockViolationsZnode, r.LockViolationsJVM, r.LockViolationsZnode, r.LockErrors, r.LockTimeouts,
		r.CountFinal, r.CountSuccess, r.CountUnknown, r.CacheEqual, r.ServerNodes, r.CacheSettleMs,
		r.WatchEvents, r.WatchedChanges, r.TreeWrites, r.WatchedWrites, r.WriteErrors)
	return b.String()
}

// TestCuratorRecipes: through zkgate, under the faults, no LOST, no SUSPENDED for the
// latch, lock, counter and writer clients, never two leaders or two lock holders, a
// SharedCount that counts its increments, a cache equal to the server's tree, and no
// persistent watch event lost without a reconnect. The direct run is the baseline.
func TestCuratorRecipes(t *testing.T) {
	cp := curatorClassPath()
	if os.Getenv("ZKGATE_CURATOR_CLASSPATH") == "" {
		cp += ":/usr/share/java/curator-recipes.jar" // libcurator-recipes-java
	}
	requireTool(t, exec.Command("javap", "-cp", cp, "org.apache.curator.framework.recipes.watch.PersistentWatcher"))
	ens := zktest.Start(t, zktest.Config{Members: 3})
	cp = ens.Install().ClassPath + ":" + cp
	classes := t.TempDir()
	src := filepath.Join("..", "testdata", "clients", "curator", "CuratorRecipes.java")
	if out, err := exec.Command("javac", "-d", classes, "-cp", cp, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	cp = classes + ":" + cp
	driver := os.Getenv("ZKGATE_TEST_DRIVER")

	var direct, through *recipesResult
	t.Run("direct", func(t *testing.T) {
		direct = runRecipes(t, ens, cp, ens.ConnectString(), func() map[int64]string { return consPlacement(t, ens) })
	})
	if direct == nil {
		t.Fatal("no baseline")
	}
	t.Run("zkgate", func(t *testing.T) {
		g := startGate(t, ens, proxy.Config{})
		through = runRecipes(t, ens, cp, g.addr, func() map[int64]string { return gatePlacement(g) })
		// A client closed to resync its persistent watches counts as moved in Totals.
		tot := g.srv.Totals()
		t.Logf("zkgate: %d moves, %d of them closed; %d clients closed after a move to resync persistent watches",
			tot.Moves, tot.MovesClosed, strings.Count(g.logs.String(), "persistent watches may have missed changes"))
		if through == nil || t.Failed() {
			t.Logf("zkgate's log for the program's sessions:\n%s", recipesGateLog(g, through))
		}
		if through == nil {
			return
		}
		r := through
		for role, c := range r.Clients {
			if c.Lost > 0 {
				t.Errorf("%s: %d LOST through zkgate", role, c.Lost)
			}
		}
		for _, role := range recipesStrictRoles {
			if c := r.Clients[role]; c.Suspended > 0 {
				t.Errorf("%s: %d SUSPENDED through zkgate (want 0; straight at the members %d)", role, c.Suspended, direct.Clients[role].Suspended)
			}
		}
		// A direct client sees a SUSPENDED for each fault of the member it is on; which
		// members those are is up to the client's shuffle straight at the members, and up to
		// zkgate's placement through it. So the baseline is counted per fault that hit the
		// client's member (its exposure), and the direct run's figures are logged beside.
		for _, role := range recipesWatchRoles {
			if c := r.Clients[role]; c.Suspended > r.exposure[role] {
				t.Errorf("%s: %d SUSPENDED through zkgate, more than the %d faults of its members (straight at the members: %d SUSPENDED, %d faults)",
					role, c.Suspended, r.exposure[role], direct.Clients[role].Suspended, direct.exposure[role])
			}
		}
		if r.TwoLeaderSamples > 0 || r.TwoLeaderCallbacks > 0 {
			t.Errorf("two leaders at once: %d samples, %d callbacks", r.TwoLeaderSamples, r.TwoLeaderCallbacks)
		}
		if r.LockViolationsJVM > 0 || r.LockViolationsZnode > 0 {
			t.Errorf("lock exclusion violated: %d times in the JVM, %d by the owner znode", r.LockViolationsJVM, r.LockViolationsZnode)
		}
		if r.LockAcquired == 0 || r.CountSuccess == 0 || r.TreeWrites == 0 {
			t.Errorf("the recipes did not run: %d locks, %d increments, %d writes", r.LockAcquired, r.CountSuccess, r.TreeWrites)
		}
		// An increment retried after a connection loss and then refused may have been
		// applied: its outcome is unknown, as it is straight at a member.
		if r.CountFinal < r.CountSuccess || r.CountFinal > r.CountSuccess+r.CountUnknown {
			t.Errorf("SharedCount %d after %d successful increments and %d of unknown outcome", r.CountFinal, r.CountSuccess, r.CountUnknown)
		}
		if !r.CacheEqual {
			t.Errorf("CuratorCache differs from the server's tree: %s", r.CacheDiff)
		}
		// Persistent watch events may be lost across a reconnect, never without one.
		if r.WatchEvents < r.WatchedChanges && r.Clients["watcher"].Suspended == 0 {
			t.Errorf("the persistent watcher saw %d events of %d changes and no disconnect", r.WatchEvents, r.WatchedChanges)
		}
	})
	t.Logf("straight at the members: %s", direct.summary())
	if through != nil {
		t.Logf("through zkgate (%s driver): %s", cmp.Or(driver, "epoll"), through.summary())
	}
}

// runRecipes runs CuratorRecipes.java on connect for recipesRunFor with the fault
// schedule, and returns its result, or nil when it had none (the test has failed then).
// placement maps session ids to the member address each is on.
func runRecipes(t *testing.T, ens *zktest.Ensemble, cp, connect string, placement func() map[int64]string) *recipesResult {
	ctx, cancel := context.WithTimeout(context.Background(), recipesRunFor+150*time.Second)
	defer cancel()
	root := fmt.Sprintf("/recipes-%d", time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, ens.Install().Java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-Xmx256m",
		"-cp", cp, "CuratorRecipes", connect, root, strconv.Itoa(int(recipesRunFor/time.Second)), ens.ConnectString())
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		lines  []string
		result *recipesResult
		faults *recipesFaults
		roles  = map[string]int64{}
	)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "READY":
			var sessions map[string]string
			if err := json.Unmarshal([]byte(rest), &sessions); err != nil {
				t.Errorf("READY line %q: %v", rest, err)
				continue
			}
			for role, s := range sessions {
				id, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
				if err != nil {
					t.Errorf("session %q: %v", s, err)
				}
				roles[role] = int64(id)
			}
			where := func() map[int64]string {
				on := placement()
				mine := map[int64]string{}
				for _, id := range roles {
					mine[id] = on[id]
				}
				return mine
			}
			t.Logf("sessions by member at READY: %v", byMember(where()))
			faults = startRecipeFaults(ens, where)
		case "RESULT":
			result = &recipesResult{}
			if err := json.Unmarshal([]byte(rest), result); err != nil {
				t.Errorf("RESULT line: %v", err)
				result = nil
			}
		}
	}
	err = cmd.Wait()
	if faults != nil {
		log, exposed := faults.stop()
		for _, l := range log {
			t.Log(l)
		}
		if result != nil {
			result.exposure = map[string]int{}
			for role, id := range roles {
				result.exposure[role] = exposed[id]
			}
		}
	}
	t.Logf("CuratorRecipes (%v):\n%s", err, strings.Join(lines, "\n"))
	if err != nil || result == nil {
		t.Errorf("CuratorRecipes ended with %v and %s; its log:\n%s", err, map[bool]string{true: "a result", false: "no result"}[result != nil], tail(logs.String(), 60))
	}
	if err := ens.WaitReady(zktest.Ctx(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	return result
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// recipesFaults runs the fault schedule in its own goroutine.
type recipesFaults struct {
	quit    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	log     []string      // guarded by mu
	exposed map[int64]int // guarded by mu; faults by session id of the member it was on
}

// startRecipeFaults kills the follower under most of the program's sessions at
// recipesSchedule.kill and starts it again at restart; pauses the other follower at pause
// and resumes it at resume. where maps the sessions to member addresses.
func startRecipeFaults(ens *zktest.Ensemble, where func() map[int64]string) *recipesFaults {
	f := &recipesFaults{quit: make(chan struct{}), done: make(chan struct{}), exposed: map[int64]int{}}
	start := time.Now()
	go func() {
		defer close(f.done)
		var killed, paused *zktest.Member
		defer func() { // a schedule cut short leaves no member down
			if killed != nil {
				f.note(start, "restart %d: %v", killed.ID, killed.Start())
			}
			if paused != nil {
				f.note(start, "resume %d: %v", paused.ID, paused.Resume())
			}
		}()
		at := func(d time.Duration) bool {
			timer := time.NewTimer(time.Until(start.Add(d)))
			defer timer.Stop()
			select {
			case <-timer.C:
				return true
			case <-f.quit:
				return false
			}
		}
		if !at(recipesSchedule.kill) {
			return
		}
		placed := where()
		victim := busiestFollower(ens, byMember(placed), nil)
		if victim == nil {
			f.note(start, "no follower to kill (sessions %v)", byMember(placed))
			return
		}
		victim.Kill()
		killed = victim
		f.hit(placed, victim)
		f.note(start, "kill -9 member %d %s (sessions by member %v)", victim.ID, victim.ClientAddr, byMember(placed))
		if !at(recipesSchedule.restart) {
			return
		}
		err := killed.Start()
		f.note(start, "start member %d: %v", killed.ID, err)
		killed = nil
		if !at(recipesSchedule.pause) {
			return
		}
		placed = where()
		if victim = busiestFollower(ens, byMember(placed), victim); victim == nil {
			f.note(start, "no other follower to pause (sessions %v)", byMember(placed))
			return
		}
		if err := victim.Pause(); err != nil {
			f.note(start, "SIGSTOP member %d: %v", victim.ID, err)
			return
		}
		paused = victim
		f.hit(placed, victim)
		f.note(start, "SIGSTOP member %d %s (sessions by member %v)", victim.ID, victim.ClientAddr, byMember(placed))
		if !at(recipesSchedule.resume) {
			return
		}
		f.note(start, "SIGCONT member %d: %v (sessions by member %v)", paused.ID, paused.Resume(), byMember(where()))
		paused = nil
	}()
	return f
}

func (f *recipesFaults) note(start time.Time, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, fmt.Sprintf("fault +%.1fs: ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
}

// hit counts a fault of victim against the sessions placed on it.
func (f *recipesFaults) hit(placed map[int64]string, victim *zktest.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, addr := range placed {
		if addr == victim.ClientAddr {
			f.exposed[id]++
		}
	}
}

// stop ends the schedule, undoing any fault still in effect, and returns what it did and
// how many faults hit each session's member.
func (f *recipesFaults) stop() ([]string, map[int64]int) {
	close(f.quit)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log, f.exposed
}

// byMember counts sessions by member address ("" for none).
func byMember(placed map[int64]string) map[string]int {
	out := map[string]int{}
	for _, addr := range placed {
		out[addr]++
	}
	return out
}

// busiestFollower is the follower, other than not, under most sessions in placed.
func busiestFollower(ens *zktest.Ensemble, placed map[string]int, not *zktest.Member) *zktest.Member {
	var best *zktest.Member
	for _, m := range ens.Followers() {
		if m != not && (best == nil || placed[m.ClientAddr] > placed[best.ClientAddr]) {
			best = m
		}
	}
	return best
}

// gatePlacement maps zkgate's sessions to their members.
func gatePlacement(g *gate) map[int64]string {
	out := map[int64]string{}
	for _, s := range g.srv.Sessions() {
		out[s.ID] = s.Member
	}
	return out
}

var consSession = regexp.MustCompile(`sid=0x([0-9a-f]+)`)

// consPlacement maps sessions to the member whose cons lists them.
func consPlacement(t *testing.T, ens *zktest.Ensemble) map[int64]string {
	on := map[int64]string{}
	for _, m := range ens.Members() {
		if !m.Running() || m.Paused() {
			continue
		}
		out, err := m.FourLetter("cons")
		if err != nil {
			t.Logf("cons on member %d: %v", m.ID, err)
			continue
		}
		for _, sm := range consSession.FindAllStringSubmatch(out, -1) {
			if id, err := strconv.ParseUint(sm[1], 16, 64); err == nil {
				on[int64(id)] = m.ClientAddr
			}
		}
	}
	return on
}

// recipesGateLog is zkgate's log lines that name one of the program's sessions.
func recipesGateLog(g *gate, r *recipesResult) string {
	var ids []string
	if r != nil {
		for _, c := range r.Clients {
			ids = append(ids, c.Session)
		}
	}
	var out []string
	for _, line := range strings.Split(g.logs.String(), "\n") {
		keep := r == nil && strings.Contains(line, "session")
		for _, id := range ids {
			keep = keep || strings.Contains(line, id)
		}
		if keep {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
