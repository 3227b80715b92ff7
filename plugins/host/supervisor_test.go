package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/plugins/proto"
)

// testPlugin is the SDK-built plugin binary, built once in TestMain.
var testPlugin string

const helperEnv = "KEELSON_PLUGIN_HOST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		testPlugin = os.Getenv(helperEnv + "_PLUGIN")
		runHelper(mode)
		return
	}
	dir, err := os.MkdirTemp("", "keelson-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "testplugin")
	build := exec.Command("go", "build", "-o", testPlugin, "github.com/keelson/keelson/plugins/internal/testplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(logs *syncBuffer) Config {
	return Config{
		APIEndpoint: "https://127.0.0.1:6443",
		Credentials: func(_ context.Context, plugin string, term uint64) (proto.Credentials, time.Time, error) {
			return proto.Credentials{BearerToken: fmt.Sprintf("token-%s-%d", plugin, term)}, time.Time{}, nil
		},
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PingInterval:   100 * time.Millisecond,
		PingTimeout:    time.Second,
		StartTimeout:   30 * time.Second,
		StopGrace:      5 * time.Second,
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     2 * time.Second,
	}
}

func spec(name, mode string, args ...string) Spec {
	cfg, _ := json.Marshal(map[string]string{"mode": mode, "after": "300ms"})
	return Spec{Name: name, Path: testPlugin, Args: args, Builtin: true, Config: cfg}
}

func startSupervisor(t *testing.T, cfg Config, specs ...Spec) *Supervisor {
	t.Helper()
	s, err := New(cfg, specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// waitFor polls the named plugin's status until cond holds. The deadline is
// a hang guard, not a timing claim.
func waitFor(t *testing.T, s *Supervisor, name string, cond func(PluginStatus) bool) PluginStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last PluginStatus
	for time.Now().Before(deadline) {
		for _, st := range s.Status() {
			if st.Name == name {
				last = st
				if cond(st) {
					return st
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("plugin %s never reached the expected state; last status %+v", name, last)
	return last
}

// processGone reports whether pid no longer runs (absent, or a zombie
// awaiting a reaper that is not ours).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestHealthyPluginRunsReadyAndStopEndsEveryProcess(t *testing.T) {
	logs := &syncBuffer{}
	s := startSupervisor(t, testConfig(logs), spec("alpha", "healthy"), spec("beta", "healthy"),
		Spec{Name: "off", Path: testPlugin, Disabled: true})

	var pids []int
	for _, name := range []string{"alpha", "beta"} {
		// The SDK reports a plugin without ManualReady ready ("running") as
		// Run starts, and the plugin's own Ready message follows: wait for it.
		st := waitFor(t, s, name, func(st PluginStatus) bool {
			return st.State == StateRunning && st.Ready && st.Message != "running"
		})
		if st.Message != "term=7 host=https://127.0.0.1:6443" {
			t.Errorf("%s: message %q does not show the configured term and endpoint", name, st.Message)
		}
		if st.Kind != proto.KindController || st.Version != "0.0.1-test" || st.Term != 7 || st.Restarts != 0 {
			t.Errorf("%s: unexpected status %+v", name, st)
		}
		pids = append(pids, st.PID)
	}
	if st := s.Status()[2]; st.State != StateDisabled {
		t.Errorf("disabled plugin is %s, want %s", st.State, StateDisabled)
	}

	s.Stop()
	for i, pid := range pids {
		if pid == 0 || !processGone(pid) {
			t.Errorf("plugin process %d (pid %d) still runs after Stop", i, pid)
		}
	}
	for _, st := range s.Status()[:2] {
		if st.State != StateStopped {
			t.Errorf("%s is %s after Stop, want %s", st.Name, st.State, StateStopped)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "plugin=alpha") || !strings.Contains(out, "testplugin running") {
		t.Errorf("plugin log lines were not forwarded tagged plugin=alpha:\n%s", out)
	}
}

func TestCrashingPluginIsRestartedWithGrowingBackoff(t *testing.T) {
	s := startSupervisor(t, testConfig(&syncBuffer{}), spec("crashy", "crash"))
	backoffs := map[int]time.Duration{}
	st := waitFor(t, s, "crashy", func(st PluginStatus) bool {
		if st.State == StateCrashLooping {
			backoffs[st.Restarts] = st.Backoff
		}
		return st.State == StateCrashLooping && st.Restarts >= 3
	})
	if !strings.Contains(st.LastError, "testplugin crashed on purpose") {
		t.Errorf("last error %q does not carry the plugin's error", st.LastError)
	}
	if backoffs[1] != 100*time.Millisecond || backoffs[2] != 200*time.Millisecond || backoffs[3] != 400*time.Millisecond {
		t.Errorf("backoffs by restart = %v, want 100ms, 200ms, 400ms", backoffs)
	}
}

func TestPluginThatExitsAtOnceIsCrashLooping(t *testing.T) {
	s := startSupervisor(t, testConfig(&syncBuffer{}), spec("quitter", "exit"))
	st := waitFor(t, s, "quitter", func(st PluginStatus) bool {
		return st.State == StateCrashLooping && st.Restarts >= 2
	})
	if !strings.Contains(st.LastError, "exit status 3") {
		t.Errorf("last error %q does not show the exit status", st.LastError)
	}
}

func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.PingTimeout = 500 * time.Millisecond
	s := startSupervisor(t, cfg, spec("sleepy", "hang"))
	first := waitFor(t, s, "sleepy", func(st PluginStatus) bool { return st.State == StateRunning && st.PID != 0 })
	st := waitFor(t, s, "sleepy", func(st PluginStatus) bool { return st.Restarts >= 1 })
	if !strings.Contains(st.LastError, "killed as hung") {
		t.Errorf("last error %q does not say the plugin hung", st.LastError)
	}
	if !processGone(first.PID) {
		t.Errorf("hung plugin process %d still exists", first.PID)
	}
}

func TestWrongChecksumIsRefused(t *testing.T) {
	b, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	actual := hex.EncodeToString(sum[:])
	wrong := strings.Repeat("ab", 32)
	sp := ThirdPartySpec("thirdparty", filepath.Dir(testPlugin), filepath.Base(testPlugin), wrong, nil)
	s := startSupervisor(t, testConfig(&syncBuffer{}), sp, ThirdPartySpec("nosum", filepath.Dir(testPlugin), "testplugin", "", nil))

	st := waitFor(t, s, "thirdparty", func(st PluginStatus) bool { return st.State == StateRefused })
	for _, want := range []string{testPlugin, actual, wrong} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("refusal %q does not name %s", st.LastError, want)
		}
	}
	if st.Restarts != 0 || st.PID != 0 {
		t.Errorf("a refused plugin must not run: %+v", st)
	}
	st = waitFor(t, s, "nosum", func(st PluginStatus) bool { return st.State == StateRefused })
	if !strings.Contains(st.LastError, "no sha256") {
		t.Errorf("refusal %q does not say the checksum is missing", st.LastError)
	}
}

func TestRightChecksumRuns(t *testing.T) {
	b, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	sp := ThirdPartySpec("thirdparty", filepath.Dir(testPlugin), filepath.Base(testPlugin), hex.EncodeToString(sum[:]), nil)
	s := startSupervisor(t, testConfig(&syncBuffer{}), sp)
	waitFor(t, s, "thirdparty", func(st PluginStatus) bool { return st.State == StateRunning })
}

func TestProtocolVersion2PluginIsRefused(t *testing.T) {
	s := startSupervisor(t, testConfig(&syncBuffer{}), spec("future", "healthy", "v2"))
	st := waitFor(t, s, "future", func(st PluginStatus) bool { return st.State == StateRefused })
	for _, want := range []string{"does not speak plugin protocol version 1", "Plugin version: 2", testPlugin} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("refusal %q does not contain %q", st.LastError, want)
		}
	}
}

// runHelper is the child process of the kill -9 tests: it supervises one
// healthy plugin, prints the plugin's PID and waits to be killed.
func runHelper(mode string) {
	cfg := testConfig(&syncBuffer{})
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := New(cfg, []Spec{spec("orphan", "healthy")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s.noParentDeathSignal = mode == "watchdog"
	if err := s.Start(context.Background(), 1); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		st := s.Status()[0]
		if st.State == StateRunning {
			fmt.Printf("PID %d\n", st.PID)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {}
}

func TestKilledHostLeavesNoPlugin(t *testing.T) {
	for _, mode := range []string{"pdeathsig", "watchdog"} {
		t.Run(mode, func(t *testing.T) {
			helper := exec.Command(os.Args[0])
			helper.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_PLUGIN="+testPlugin)
			helper.Stderr = os.Stderr
			out, err := helper.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatalf("helper did not report its plugin: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID ")))
			if err != nil || pid <= 0 {
				t.Fatalf("helper printed %q", line)
			}
			if processGone(pid) {
				t.Fatalf("plugin %d is not running before the host is killed", pid)
			}
			if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = helper.Wait()
			deadline := time.Now().Add(60 * time.Second)
			for !processGone(pid) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("plugin %d outlived its SIGKILLed host", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestCredentialsAreRenewedByARestartThatIsNotAFailure(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	var mu sync.Mutex
	issued := 0
	cfg.Credentials = func(_ context.Context, plugin string, term uint64) (proto.Credentials, time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		issued++
		return proto.Credentials{BearerToken: fmt.Sprintf("token-%d", issued)}, time.Now().Add(300 * time.Millisecond), nil
	}
	s := startSupervisor(t, cfg, spec("renewing", "healthy"))
	first := waitFor(t, s, "renewing", func(st PluginStatus) bool { return st.State == StateRunning && st.PID != 0 })
	second := waitFor(t, s, "renewing", func(st PluginStatus) bool {
		return st.State == StateRunning && st.PID != 0 && st.PID != first.PID
	})
	if second.Restarts != 0 || second.LastError != "" {
		t.Errorf("a renewal was counted as a failure: %+v", second)
	}
	if !processGone(first.PID) {
		t.Errorf("the process with the old credentials (pid %d) still runs", first.PID)
	}
}

func TestAuthorizeSeesTheDescriptionAndItsErrorFailsTheStart(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	var mu sync.Mutex
	var seen []proto.Description
	cfg.Authorize = func(_ context.Context, sp Spec, desc proto.Description) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, desc)
		if sp.Name == "denied" {
			return errors.New("cannot write its ClusterRole")
		}
		return nil
	}
	var changes []State
	cfg.OnChange = func(st PluginStatus) {
		mu.Lock()
		defer mu.Unlock()
		if st.Name == "allowed" && (len(changes) == 0 || changes[len(changes)-1] != st.State) {
			changes = append(changes, st.State)
		}
	}
	s := startSupervisor(t, cfg, spec("allowed", "healthy"), spec("denied", "healthy"))
	waitFor(t, s, "allowed", func(st PluginStatus) bool { return st.State == StateRunning })
	st := waitFor(t, s, "denied", func(st PluginStatus) bool { return st.State == StateCrashLooping })
	if !strings.Contains(st.LastError, "granting its API permissions: cannot write its ClusterRole") {
		t.Errorf("last error %q does not explain the failed grant", st.LastError)
	}
	s.Stop()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0].Name != "testplugin" || seen[0].Kind != proto.KindController {
		t.Errorf("Authorize saw %+v, want the plugin's description", seen)
	}
	want := []State{StateStarting, StateRunning, StateStopped}
	if !slices.Equal(changes, want) {
		t.Errorf("OnChange saw states %v, want %v", changes, want)
	}
}
