package main

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/config"
	"github.com/zkgate/zkgate/internal/zktest"
)

// serveForTest runs zkgate (serveConfig) in front of ens as ensemble "ops", with an admin
// server, until the test ends. change adjusts the ensemble's settings.
func serveForTest(t *testing.T, ens *zktest.Ensemble, change func(*config.Ensemble)) running {
	t.Helper()
	f := config.Default()
	f.Admin.Listen = "127.0.0.1:0"
	f.Log.Format = "json"
	e := config.DefaultEnsemble()
	e.Name, e.Listen, e.Members = "ops", "127.0.0.1:0", ens.Addrs()
	e.Health.Interval, e.Health.Timeout = 200*time.Millisecond, 300*time.Millisecond
	if change != nil {
		change(&e)
	}
	f.Ensembles = []config.Ensemble{e}
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan running, 1)
	done := make(chan error, 1)
	go func() { done <- serveConfig(ctx, f, func(r running) { readyCh <- r }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	select {
	case r := <-readyCh:
		return r
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("zkgate did not start")
	}
	return running{}
}

// requireProgram finds an operator's tool; without it the test skips, or fails under
// CI=true (.ci/run installs it).
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (.ci/run installs it)", name, err)
		}
		t.Skipf("%s: %v", name, err)
	}
	return p
}

// hammer keeps a go-zookeeper session reading one hot znode and, now and then, a missing
// one, until the test ends: a hot client and a hot path for the operator's views.
func hammer(t *testing.T, addr, hot string) {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	zktest.WaitFor(t, 15*time.Second, "a session through zkgate", func() bool {
		_, err := c.Create(hot, []byte("hot"), 0, zk.WorldACL(zk.PermAll))
		return err == nil || err == zk.ErrNodeExists
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Get(hot)
			if i%10 == 0 {
				c.Get("/cold/missing")
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		c.Close()
	})
}

// What an operator looks at during an incident: `zkgate top` in an 80x24 tmux, and the
// status page in headless Chromium at 1280x800. A follower is killed first, so both have
// something wrong to say, and one client hammers one path.
func TestOperatorViews(t *testing.T) {
	tmux := requireProgram(t, "tmux")
	chromium := requireProgram(t, "chromium")
	defer func(d time.Duration) { sampleEvery = d }(sampleEvery)
	sampleEvery = 200 * time.Millisecond
	ens := zktest.Start(t, zktest.Config{Members: 3})
	r := serveForTest(t, ens, func(e *config.Ensemble) { e.Hotspots.Window = time.Second })
	hot := fmt.Sprintf("/hot-%d/locks", time.Now().UnixNano())
	c, _, err := zk.Connect([]string{r.Clients["ops"]}, 4*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	zktest.WaitFor(t, 15*time.Second, "the parent znode", func() bool {
		_, err := c.Create(filepath.Dir(hot), nil, 0, zk.WorldACL(zk.PermAll))
		return err == nil || err == zk.ErrNodeExists
	})
	hammer(t, r.Clients["ops"], hot)
	victim := ens.Followers()[0]
	victim.Kill()
	waitStatus(t, r.Admin, "the killed member down and the hot path listed", func(body string) bool {
		return strings.Contains(body, `"status": "down"`) && strings.Contains(body, `"key": "`+hot+`"`)
	})
	// mntr lists them too, key first.
	zktest.WaitFor(t, 10*time.Second, "the hot path first in mntr", func() bool {
		return strings.Contains(fourLetter(t, r.Clients["ops"], "mntr"), "zkgate_hot_paths_1\t"+hot+" ")
	})

	t.Run("top under tmux", func(t *testing.T) {
		session := fmt.Sprintf("zkgate-top-%d", os.Getpid())
		cmd := fmt.Sprintf("env ZKGATE_TEST_MAIN=1 %s top --admin %s --interval 300ms", os.Args[0], r.Admin)
		if out, err := exec.Command(tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd).CombinedOutput(); err != nil {
			t.Fatalf("tmux: %v %s", err, out)
		}
		defer exec.Command(tmux, "kill-session", "-t", session).Run()
		var screen string
		zktest.WaitFor(t, 20*time.Second, "zkgate top drew the hot path", func() bool {
			out, err := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
			screen = string(out)
			return err == nil && strings.Contains(screen, "PATHS") && strings.Contains(screen, hot)
		})
		t.Logf("zkgate top at 80x24:\n%s", screen)
		lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
		if len(lines) > 24 {
			t.Errorf("%d lines in a 24-line terminal", len(lines))
		}
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > 80 {
				t.Errorf("line of %d columns: %q", n, l)
			}
		}
		// Its first line is still there (nothing scrolled off), the ensemble and what is
		// wrong with it follow, and the hot path leads the PATHS section.
		for _, want := range []string{"zkgate ", "ops  ready  breaker CLOSED  quorum  2/3 serving",
			"! ops: " + victim.ClientAddr + " down since", "CLIENTS (ops, last 1s)", "127.0.0.1 ", "SESSIONS (ops"} {
			if !strings.Contains(screen, want) {
				t.Errorf("top lacks %q", want)
			}
		}
		paths := screen[strings.Index(screen, "PATHS"):]
		if first := strings.Split(paths, "\n")[1]; !strings.HasPrefix(first, hot+" ") {
			t.Errorf("first path %q, want the hot one %s", first, hot)
		}
	})

	t.Run("status page in chromium", func(t *testing.T) {
		// Enough points for every chart to draw lines.
		zktest.WaitFor(t, 20*time.Second, "ten samples", func() bool {
			_, page := get(t, "http://"+r.Admin+"/")
			return strings.Count(page, "<polyline") >= 4
		})
		dir := t.TempDir() // the screenshot stays out of the repo
		shot := filepath.Join(dir, "status.png")
		args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800",
			"--user-data-dir=" + filepath.Join(dir, "profile")}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, chromium, append(args, "--screenshot="+shot, "http://"+r.Admin+"/")...).CombinedOutput(); err != nil {
			t.Fatalf("chromium screenshot: %v\n%s", err, out)
		}
		if keep := os.Getenv("ZKGATE_SCREENSHOT"); keep != "" {
			b, _ := os.ReadFile(shot)
			os.WriteFile(keep, b, 0o644)
		}
		img := readPNG(t, shot)
		if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 800 {
			t.Fatalf("screenshot %v, want 1280x800", b)
		}
		// The charts rendered above the fold: the request line's blue, the breaker band's
		// green, and the banner's red frame for the dead member.
		for _, c := range []struct {
			what    string
			r, g, b uint8
			min     int
		}{
			{"request and p50 lines (#1f77b4)", 0x1f, 0x77, 0xb4, 300},
			{"p99 line (#ff7f0e)", 0xff, 0x7f, 0x0e, 100},
			{"breaker timeline, closed (#2e9d4f)", 0x2e, 0x9d, 0x4f, 2000},
			{"alert banner frame (#d62728)", 0xd6, 0x27, 0x28, 500},
		} {
			if n := countColor(img, c.r, c.g, c.b); n < c.min {
				t.Errorf("%s: %d pixels, want at least %d", c.what, n, c.min)
			}
		}
		// The page refreshes in place: after a few seconds the DOM has been replaced
		// by a fetch of the page, and still holds the five charts.
		out, err := exec.CommandContext(ctx, chromium, append(args, "--virtual-time-budget=7000", "--dump-dom", "http://"+r.Admin+"/")...).Output()
		if err != nil {
			t.Fatalf("chromium dump-dom: %v", err)
		}
		dom := string(out)
		if m := regexp.MustCompile(`data-refreshes="(\d+)"`).FindStringSubmatch(dom); m == nil || m[1] == "0" {
			t.Errorf("the page did not refresh in place: %v", m)
		}
		if n := strings.Count(dom, `<svg class="chart"`); n != 5 {
			t.Errorf("%d charts in the refreshed page, want 5", n)
		}
		if !strings.Contains(dom, victim.ClientAddr+" down") {
			t.Errorf("the banner does not name the dead member")
		}
	})
}

func waitStatus(t *testing.T, adminAddr, what string, cond func(body string) bool) string {
	t.Helper()
	var body string
	zktest.WaitFor(t, 30*time.Second, what, func() bool {
		_, body = get(t, "http://"+adminAddr+"/api/v1/status")
		return cond(body)
	})
	return body
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// countColor counts the pixels within a small distance of r, g, b (anti-aliasing).
func countColor(img image.Image, r, g, b uint8) int {
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr>>8, r) && near(pg>>8, g) && near(pb>>8, b) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, want uint8) bool { d := int(v) - int(want); return d > -12 && d < 12 }
