package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkgate/zkgate/admin"
	"github.com/zkgate/zkgate/config"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/jute"
)

// tlsRig is a 3-member ensemble with a secureClientPort on each member requiring client
// certificates (mutual TLS), and the PKI behind it all.
type tlsRig struct {
	// zkDefaults: the ensemble and the Java client keep ZooKeeper 3.8's TLS defaults
	// (TLSv1.2, its cipher list); otherwise both speak TLS 1.3.
	zkDefaults bool
	ens        *zktest.Ensemble
	pki        *zktest.PKI
	server     zktest.Cert // zkgate's listener certificate
	client     zktest.Cert // the clients' certificate
	member     zktest.Cert // zkgate's certificate towards the members
}

func newTLSRig(t *testing.T) *tlsRig { return newTLSRigWith(t, false) }

// newTLSRigWith is newTLSRig, with ZooKeeper 3.8's TLS defaults when zkDefaults.
func newTLSRigWith(t *testing.T, zkDefaults bool) *tlsRig {
	t.Helper()
	pki := zktest.NewPKI(t)
	zkCert := pki.Issue(t, "zookeeper", false, false)
	extra := pki.ZooKeeperTLS(zkCert, "need")
	if !zkDefaults {
		// ZooKeeper 3.8 serves TLSv1.2 alone unless told otherwise (its protocol, and
		// cipher suites with no TLS 1.3 one).
		extra["ssl.protocol"], extra["ssl.enabledProtocols"], extra["ssl.ciphersuites"] = "TLSv1.3", "TLSv1.3,TLSv1.2", javaCiphers
	}
	ens := zktest.Start(t, zktest.Config{Members: 3, SecureClientPort: true, Extra: extra})
	return &tlsRig{zkDefaults: zkDefaults, ens: ens, pki: pki, server: pki.Issue(t, "zkgate", false, false),
		client: pki.Issue(t, "client", false, false), member: pki.Issue(t, "zkgate-to-members", false, false)}
}

// withTLS gives zkgate a TLS listener requiring client certificates and, when toMembers,
// reaches the members on their secure ports with its own certificate.
func (r *tlsRig) withTLS(toMembers bool) func(*config.Ensemble) {
	return func(e *config.Ensemble) {
		e.TLS = config.TLS{Listen: "127.0.0.1:0", Cert: r.server.Crt, Key: r.server.Key, ClientCA: r.pki.CA, MinVersion: "1.2"}
		if toMembers {
			e.Members = r.ens.SecureAddrs()
			e.MemberTLS = config.MemberTLS{Enabled: true, CA: r.pki.CA, Cert: r.member.Crt, Key: r.member.Key}
		}
	}
}

func (r *tlsRig) clientTLS(c zktest.Cert) *tls.Config {
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(r.pki.CA)
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if c.Crt != "" {
		kp, err := tls.LoadX509KeyPair(c.Crt, c.Key)
		if err != nil {
			panic(err)
		}
		// Always presented: Go's client would hold back a certificate the server's CA
		// list does not name, and the refusal to test is the server's.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
	}
	return cfg
}

// goZK connects go-zookeeper to addr, over TLS when cfg is set.
func goZK(t *testing.T, addr string, cfg *tls.Config) (*zk.Conn, <-chan zk.Event) {
	t.Helper()
	dial := zk.Dialer(net.DialTimeout)
	if cfg != nil {
		dial = func(network, address string, timeout time.Duration) (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, network, address, cfg)
		}
	}
	c, ev, err := zk.Connect([]string{addr}, 6*time.Second, zk.WithLogger(quiet{}), zk.WithDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	zktest.WaitFor(t, 20*time.Second, "a go-zookeeper session through "+addr, func() bool { return c.State() == zk.StateHasSession })
	return c, ev
}

// crudGoZK does CRUD, a watch and an ephemeral.
func crudGoZK(t *testing.T, c *zk.Conn, root string) {
	t.Helper()
	acl := zk.WorldACL(zk.PermAll)
	if _, err := c.Create(root, []byte("v1"), 0, acl); err != nil {
		t.Fatalf("create: %v", err)
	}
	_, _, w, err := c.GetW(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(root, []byte("v2"), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w:
		if ev.Type != zk.EventNodeDataChanged {
			t.Fatalf("watch: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not fire")
	}
	eph, err := c.Create(root+"/eph", nil, zk.FlagEphemeral, acl)
	if err != nil {
		t.Fatal(err)
	}
	if _, st, err := c.Get(eph); err != nil || st.EphemeralOwner != c.SessionID() {
		t.Fatalf("ephemeral: %v %+v", err, st)
	}
	if err := c.Delete(eph, -1); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(root, -1); err != nil {
		t.Fatal(err)
	}
}

// javaCiphers are ZooKeeper 3.8's default cipher suites with the TLS 1.3 ones first.
const javaCiphers = "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,TLS_CHACHA20_POLY1305_SHA256," +
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"

// javaTLSFlags are the Java client's system properties for TLS with a client
// certificate: TLS 1.3, or ZooKeeper 3.8's default (TLSv1.2) in a zkDefaults rig.
func (r *tlsRig) javaTLSFlags() []string {
	flags := []string{"-Dzookeeper.client.secure=true", "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
		"-Dzookeeper.ssl.trustStore.location=" + r.pki.CA, "-Dzookeeper.ssl.trustStore.type=PEM",
		"-Dzookeeper.ssl.keyStore.location=" + r.client.PEM, "-Dzookeeper.ssl.keyStore.type=PEM"}
	if r.zkDefaults {
		return flags
	}
	return append(flags, "-Dzookeeper.ssl.protocol=TLSv1.3", "-Dzookeeper.ssl.ciphersuites="+javaCiphers)
}

// crudZkCli runs the Java shell with the commands on its stdin.
func crudZkCli(t *testing.T, r *tlsRig, addr string, secure bool, root string) {
	t.Helper()
	var jvm []string
	if secure {
		jvm = r.javaTLSFlags()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := r.ens.Install().JavaCLIWith(ctx, jvm, addr)
	cmd.Stdin = strings.NewReader(strings.Join([]string{
		"create " + root + " v1", "get -w " + root, "set " + root + " v2", "create -e " + root + "/eph e",
		"stat " + root + "/eph", "sync " + root, "get " + root, "delete " + root + "/eph", "delete " + root, "quit"}, "\n") + "\n")
	start := time.Now()
	out, _ := cmd.CombinedOutput()
	s := string(out)
	t.Logf("zkCli (tls %v) took %v", secure, time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"Created " + root, "type:NodeDataChanged path:" + root, "Created " + root + "/eph", "ephemeralOwner = 0x", "v2"} {
		if !strings.Contains(s, want) {
			t.Errorf("zkCli (tls %v) lacks %q:\n%s", secure, want, s)
			return
		}
	}
	if strings.Contains(s, "ephemeralOwner = 0x0\n") {
		t.Errorf("zkCli: the ephemeral has no owner:\n%s", s)
	}
}

func crudKazoo(t *testing.T, r *tlsRig, addr string, secure bool, root string) {
	t.Helper()
	python := "/usr/bin/python3"
	if p := os.Getenv("ZKGATE_PYTHON"); p != "" {
		python = p
	}
	if err := exec.Command(python, "-c", "import kazoo").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kazoo: %v (.ci/run installs python3-kazoo)", err)
		}
		t.Skipf("kazoo: %v", err)
	}
	args := []string{filepath.Join("..", "..", "testdata", "clients", "kazoo_tls.py"), addr, root}
	if secure {
		args = append(args, r.pki.CA, r.client.Crt, r.client.Key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
	t.Logf("kazoo (tls %v): %s", secure, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | "))
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Errorf("kazoo (tls %v): %v\n%s", secure, err, out)
	}
	// Its closeSession's reply reaches it before zkgate closes the connection (the
	// goroutine driver, which TLS sessions used, once dropped it).
	if strings.Contains(string(out), "Connection dropped") {
		t.Errorf("kazoo (tls %v) saw its connection dropped:\n%s", secure, out)
	}
}

// All four combinations of TLS towards clients and towards members, each with zkCli,
// kazoo and go-zookeeper doing CRUD, a watch and an ephemeral. Two zkgates, each with a
// plain and a TLS listener: one reaches the members on their plain ports, the other on
// their secure ports with mutual TLS. Every session runs on the relay loops, its TLS
// taken from crypto/tls after the handshake (zkgate_tls_sessions_total{path="fast"}).
func TestTLSCombinations(t *testing.T) {
	rig := newTLSRig(t)
	for _, toMembers := range []bool{false, true} {
		r := serveForTest(t, rig.ens, rig.withTLS(toMembers))
		for _, secure := range []bool{false, true} {
			name := fmt.Sprintf("client tls %v, member tls %v", secure, toMembers)
			t.Run(name, func(t *testing.T) {
				fastBefore, _ := tlsSessions(t, r.Admin)
				defer func() {
					// Every TLS session was taken over by a relay loop.
					fast, fallback := tlsSessions(t, r.Admin)
					if fallback != 0 {
						t.Errorf("%d TLS sessions fell back to the goroutine driver", fallback)
					}
					if tls := secure || toMembers; tls && fast == fastBefore || !tls && fast != fastBefore {
						t.Errorf("TLS sessions on the relay loops: %d before, %d after", fastBefore, fast)
					}
				}()
				addr := r.Clients["ops"]
				var cfg *tls.Config
				if secure {
					addr, cfg = r.TLSClients["ops"], rig.clientTLS(rig.client)
				}
				root := fmt.Sprintf("/tls-%v-%v-%d", secure, toMembers, time.Now().UnixNano())
				c, _ := goZK(t, addr, cfg)
				crudGoZK(t, c, root+"-gozk")
				crudKazoo(t, rig, addr, secure, root+"-kazoo")
				crudZkCli(t, rig, addr, secure, root+"-zkcli")
				if secure {
					// Four-letter words work over TLS, as on ZooKeeper's secure port.
					conn, err := tls.Dial("tcp", addr, rig.clientTLS(rig.client))
					if err != nil {
						t.Fatal(err)
					}
					conn.Write([]byte("ruok"))
					b := make([]byte, 4)
					n, _ := conn.Read(b)
					conn.Close()
					if string(b[:n]) != "imok" {
						t.Errorf("ruok over TLS: %q", b[:n])
					}
				}
			})
		}
	}
}

// captureLogs sends zkgate's logs to a buffer for the rest of the test.
func captureLogs(t *testing.T) *zktest.Buffer {
	buf := &zktest.Buffer{}
	old := logOutput
	logOutput = buf
	t.Cleanup(func() { logOutput = old })
	return buf
}

// Refusals on a mutual-TLS listener are logged with what to check, and a certificate
// rotated on disk serves new connections while a live session carries on.
func TestTLSRefusalsAndRotation(t *testing.T) {
	rig := newTLSRig(t)
	logs := captureLogs(t)
	r := serveForTest(t, rig.ens, rig.withTLS(false))
	addr := r.TLSClients["ops"]
	live, events := goZK(t, addr, rig.clientTLS(rig.client))

	for _, c := range []struct {
		name, log string
		cert      zktest.Cert
		plain     bool
	}{
		{"no client certificate", "mutual TLS: the client presented no certificate", zktest.Cert{}, false},
		{"a certificate from another CA", "signed by a CA that is not trusted here", rig.pki.Issue(t, "rogue", false, true), false},
		{"an expired certificate", "a certificate has expired", rig.pki.Issue(t, "old", true, false), false},
		{"a plain client on the TLS port", "a plain (non-TLS) client on a TLS port", zktest.Cert{}, true},
	} {
		var err error
		if c.plain {
			err = plainConnect(addr)
		} else {
			err = tlsConnect(addr, rig.clientTLS(c.cert))
		}
		if err == nil {
			t.Errorf("%s: got a session", c.name)
		}
		zktest.WaitFor(t, 10*time.Second, c.name+" logged", func() bool {
			return strings.Contains(logs.String(), c.log)
		})
	}

	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "refused client") {
			t.Logf("%s", line)
		}
	}

	// Rotation: new files at the same paths.
	before := serverSerial(t, addr, rig.clientTLS(rig.client))
	rotated := rig.pki.Issue(t, "zkgate-rotated", false, false)
	for from, to := range map[string]string{rotated.Crt: rig.server.Crt, rotated.Key: rig.server.Key} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	zktest.WaitFor(t, 15*time.Second, "new connections served with the rotated certificate", func() bool {
		return serverSerial(t, addr, rig.clientTLS(rig.client)) == rotated.Serial.Text(16)
	})
	if before == rotated.Serial.Text(16) {
		t.Fatal("the serial did not change")
	}
	if _, _, err := live.Get("/"); err != nil {
		t.Fatalf("the live session after the rotation: %v", err)
	}
	for len(events) > 0 {
		if ev := <-events; ev.State == zk.StateDisconnected || ev.State == zk.StateExpired {
			t.Fatalf("the live session saw %v", ev.State)
		}
	}
	if !strings.Contains(logs.String(), "TLS files reloaded") {
		t.Error("no log line for the reload")
	}
	if fast, fallback := tlsSessions(t, r.Admin); fast != 1 || fallback != 0 {
		t.Errorf("TLS sessions: %d fast, %d fallback; want the live one fast", fast, fallback)
	}
}

// tlsConnect opens a TLS connection with cfg and asks for a session.
func tlsConnect(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return askSession(c)
}

func plainConnect(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	return askSession(c)
}

// askSession sends a ConnectRequest and waits for the ConnectResponse's length.
func askSession(c net.Conn) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := jute.ConnectRequest{TimeOut: 6000, Passwd: make([]byte, 16)}
	if _, err := c.Write(jute.AppendFrame(nil, &req)); err != nil {
		return err
	}
	var b [4]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

func serverSerial(t *testing.T, addr string, cfg *tls.Config) string {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// tlsSessions reads zkgate_tls_sessions_total of the ensemble "ops".
func tlsSessions(t *testing.T, adminAddr string) (fast, fallback int) {
	t.Helper()
	code, metrics := get(t, "http://"+adminAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(metrics, "\n") {
		for path, n := range map[string]*int{"fast": &fast, "fallback": &fallback} {
			if v, ok := strings.CutPrefix(line, `zkgate_tls_sessions_total{ensemble="ops",path="`+path+`"} `); ok {
				fmt.Sscan(v, n)
			}
		}
	}
	return fast, fallback
}

// A client that speaks only TLS 1.2 (AES-GCM, Go's choice) is relayed by a loop too; one
// whose suite the loops do not know (CBC) is relayed by the goroutine driver and works,
// the reason logged; a session whose member connection is TLS on a relay loop moves when
// its member is killed, the new member's TLS taken over the same way, without its client
// noticing.
func TestTLSFastPathFallbackAndMove(t *testing.T) {
	rig := newTLSRig(t)
	logs := captureLogs(t)
	r := serveForTest(t, rig.ens, rig.withTLS(true))
	addr := r.TLSClients["ops"]

	old := rig.clientTLS(rig.client)
	old.MaxVersion = tls.VersionTLS12
	c12, _ := goZK(t, addr, old)
	crudGoZK(t, c12, fmt.Sprintf("/tls12-%d", time.Now().UnixNano()))
	if fast, fallback := tlsSessions(t, r.Admin); fast != 1 || fallback != 0 {
		t.Errorf("TLS sessions: %d fast, %d fallback; want 1 and 0 (TLS 1.2 AEAD)", fast, fallback)
	}
	c12.Close()

	// Go still offers a CBC suite listed explicitly; zkgate's listener takes Go's defaults.
	cbc := rig.clientTLS(rig.client)
	cbc.MaxVersion, cbc.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	cc, _ := goZK(t, addr, cbc)
	crudGoZK(t, cc, fmt.Sprintf("/tls12-cbc-%d", time.Now().UnixNano()))
	if fast, fallback := tlsSessions(t, r.Admin); fast != 1 || fallback != 1 {
		t.Errorf("TLS sessions: %d fast, %d fallback; want 1 and 1 (the CBC one falls back)", fast, fallback)
	}
	if !strings.Contains(logs.String(), `"reason":"a cipher suite the relay loops do not know"`) ||
		!strings.Contains(logs.String(), "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA") {
		t.Errorf("no log line says why the CBC session fell back:\n%s", logs.String())
	}
	cc.Close()

	// Every member serving and in rotation, so that the session has somewhere to go.
	zktest.WaitFor(t, 30*time.Second, "three members serving, none ejected", func() bool {
		var st admin.Status
		_, body := get(t, "http://"+r.Admin+"/api/v1/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, m := range st.Ensembles[0].Members {
			if m.Serving && !m.Ejected {
				ok++
			}
		}
		return ok == 3
	})
	c, events := goZK(t, addr, rig.clientTLS(rig.client))
	root := fmt.Sprintf("/tls-move-%d", time.Now().UnixNano())
	if _, err := c.Create(root, []byte("v1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if fast, _ := tlsSessions(t, r.Admin); fast != 2 {
		t.Fatalf("%d TLS sessions on the relay loops, want 2\n%s", fast, logs.String())
	}
	var victim *zktest.Member
	zktest.WaitFor(t, 10*time.Second, "one member holding the one session", func() bool {
		var st admin.Status
		_, body := get(t, "http://"+r.Admin+"/api/v1/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		victim = nil
		for _, m := range rig.ens.Members() {
			if ms := memberStatus(st, m.SecureAddr); ms != nil && ms.Sessions == 1 {
				victim = m
			}
		}
		return victim != nil && st.Ensembles[0].Sessions == 1
	})
	victim.Kill()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zkgate's log:\n%s", logs.String())
		}
	})
	zktest.WaitFor(t, 30*time.Second, "the session moved", func() bool {
		_, metrics := get(t, "http://"+r.Admin+"/metrics")
		return strings.Contains(metrics, `zkgate_session_moves_total{ensemble="ops",outcome="moved"} 1`)
	})
	if _, err := c.Set(root, []byte("v2"), -1); err != nil {
		t.Fatalf("set after the move: %v", err)
	}
	if b, _, err := c.Get(root); err != nil || string(b) != "v2" {
		t.Fatalf("get after the move: %q %v", b, err)
	}
	for len(events) > 0 {
		if ev := <-events; ev.State == zk.StateDisconnected || ev.State == zk.StateExpired {
			t.Fatalf("the client saw %v", ev.State)
		}
	}
	if fast, fallback := tlsSessions(t, r.Admin); fast != 2 || fallback != 1 {
		t.Errorf("TLS sessions: %d fast, %d fallback; want 2 and 1 (a move is not a new session)", fast, fallback)
	}
}
