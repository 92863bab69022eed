package provider

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// script writes an executable sh script with body into dir and returns its
// path.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "provider.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newExec(t *testing.T, body string, timeout time.Duration) (*Exec, string) {
	t.Helper()
	dir := t.TempDir()
	e, err := NewExec(ExecConfig{Command: script(t, dir, body), Args: []string{"--flag", "x"}, Timeout: timeout,
		Env: []string{"PROVIDER_TEST_DIR=" + dir}})
	if err != nil {
		t.Fatal(err)
	}
	return e, dir
}

func nodes(ids ...string) []NodeRequest {
	var ns []NodeRequest
	for _, id := range ids {
		ns = append(ns, NodeRequest{ID: id})
	}
	return ns
}

// TestExecRoundTrip: each operation runs the command with its arguments,
// the operation and its environment, passes the request as JSON on stdin
// and decodes the reply.
func TestExecRoundTrip(t *testing.T) {
	e, dir := newExec(t, `
echo "$@" > "$PROVIDER_TEST_DIR/args.$3"
cat > "$PROVIDER_TEST_DIR/stdin.$3"
case $3 in
create) echo '{"machines":[{"id":"n1","state":"running","address":"10.0.0.2"},{"id":"n2","state":"creating","spot":true}]}' ;;
status) echo '{"machines":[{"id":"n1","state":"running"},{"id":"old","state":"failed","error":"boom"}],"extra":1}' ;;
delete) echo '{}' ;;
esac`, 0)
	ctx := context.Background()
	req := CreateRequest{Pool: "P", Nodes: []NodeRequest{{ID: "n1"}, {ID: "n2", Spot: true}}, Server: "https://h:1",
		JoinToken: "tok", CAPEM: "PEM", Slots: 2}
	ms, err := e.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []Machine{{ID: "n1", State: "running", Address: "10.0.0.2"}, {ID: "n2", State: "creating", Spot: true}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("create = %+v, want %+v", ms, want)
	}
	ms, err = e.Status(ctx, "P")
	if err != nil {
		t.Fatal(err)
	}
	want = []Machine{{ID: "n1", State: "running"}, {ID: "old", State: "failed", Error: "boom"}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("status = %+v, want %+v", ms, want)
	}
	if err := e.Delete(ctx, "P", []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}

	for op, wantIn := range map[string]string{
		"create": `{"pool":"P","nodes":[{"id":"n1"},{"id":"n2","spot":true}],"server":"https://h:1","join_token":"tok","ca_pem":"PEM","slots":2}`,
		"status": `{"pool":"P"}`,
		"delete": `{"pool":"P","ids":["n1","n2"]}`,
	} {
		args, _ := os.ReadFile(filepath.Join(dir, "args."+op))
		if got := strings.TrimSpace(string(args)); got != "--flag x "+op {
			t.Errorf("%s: args %q, want %q", op, got, "--flag x "+op)
		}
		in, _ := os.ReadFile(filepath.Join(dir, "stdin."+op))
		if string(in) != wantIn {
			t.Errorf("%s: stdin %s, want %s", op, in, wantIn)
		}
	}
}

// TestExecNothingToDo: creating no nodes and deleting none run nothing.
func TestExecNothingToDo(t *testing.T) {
	e, dir := newExec(t, `touch "$PROVIDER_TEST_DIR/ran"; exit 1`, 0)
	if ms, err := e.Create(context.Background(), CreateRequest{Pool: "P"}); ms != nil || err != nil {
		t.Errorf("create of nothing = %v, %v", ms, err)
	}
	if err := e.Delete(context.Background(), "P", nil); err != nil {
		t.Errorf("delete of nothing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the command ran")
	}
}

// TestExecFailures: every way the command can fail becomes an error naming
// the operation and the pool, and what went wrong.
func TestExecFailures(t *testing.T) {
	long := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name, body string
		op         string // create (of n1, n2), status or delete
		want       []string
		notWant    string
		machines   []Machine // create's machines
		incomplete bool
	}{
		{name: "exit status", op: "status", body: `echo "` + long + `" >&2; echo "no quota" >&2; exit 3`,
			want: []string{"status pool P (provider exec)", "exit status 3", "stderr: " + long[:400], "no quota"}, notWant: long},
		{name: "killed", op: "delete", body: `kill -9 $$`, want: []string{"delete pool P", "signal: killed"}},
		{name: "empty", op: "status", body: `true`, want: []string{"empty reply"}},
		{name: "empty delete", op: "delete", body: `true`, want: []string{"delete pool P", "empty reply"}},
		{name: "malformed", op: "status", body: `echo '{"machines":[{"id":'`, want: []string{"malformed JSON reply"}},
		{name: "not an object", op: "create", body: `echo '[1]'`, want: []string{"create pool P", "malformed JSON reply"}},
		{name: "trailing data", op: "status", body: `echo '{"machines":[]} {}'`, want: []string{"data after the JSON value"}},
		{name: "text", op: "delete", body: `echo deleted`, want: []string{"malformed JSON reply", `"deleted`}},
		{name: "too large", op: "status", body: `head -c 5000000 /dev/zero`, want: []string{"larger than"}},
		{name: "fewer machines", op: "create", body: `echo '{"machines":[{"id":"n2","state":"creating"}]}'`,
			want: []string{"create pool P", "asked for 2 machines, got 1"}, incomplete: true,
			machines: []Machine{{ID: "n2", State: "creating"}}},
		{name: "no machines", op: "create", body: `echo '{}'`, want: []string{"asked for 2 machines, got 0"}, incomplete: true},
		{name: "unknown id", op: "create",
			body:     `echo '{"machines":[{"id":"n1","state":"running"},{"id":"n2","state":"running"},{"id":"zz","state":"running"}]}'`,
			want:     []string{`"zz", which was not asked for`},
			machines: []Machine{{ID: "n1", State: "running"}, {ID: "n2", State: "running"}}},
		{name: "duplicate id", op: "create",
			body:     `echo '{"machines":[{"id":"n1","state":"running"},{"id":"n1","state":"failed"}]}'`,
			want:     []string{`"n1" twice`, "asked for 2 machines, got 1"},
			machines: []Machine{{ID: "n1", State: "running"}}, incomplete: true},
		{name: "unknown state", op: "create",
			body: `echo '{"machines":[{"id":"n1","state":"running"},{"id":"n2","state":"booting"}]}'`,
			want: []string{`unknown state "booting"`},
			machines: []Machine{{ID: "n1", State: "running"},
				{ID: "n2", State: "failed", Error: `provider reported state "booting"`}}},
		{name: "status unknown state", op: "status", body: `echo '{"machines":[{"id":"n1","state":"up"}]}'`,
			want: []string{`unknown state "up"`}},
		{name: "status no id", op: "status", body: `echo '{"machines":[{"state":"running"}]}'`,
			want: []string{"without an ID"}},
		{name: "status duplicate", op: "status",
			body: `echo '{"machines":[{"id":"a","state":"running"},{"id":"a","state":"running"}]}'`,
			want: []string{`"a" twice`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newExec(t, tc.body, 0)
			var ms []Machine
			var err error
			switch tc.op {
			case "create":
				ms, err = e.Create(context.Background(), CreateRequest{Pool: "P", Nodes: nodes("n1", "n2")})
			case "status":
				ms, err = e.Status(context.Background(), "P")
			case "delete":
				err = e.Delete(context.Background(), "P", []string{"n1"})
			}
			if err == nil {
				t.Fatalf("no error; machines %+v", ms)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("error quotes all of stderr (%d bytes)", len(err.Error()))
			}
			if !reflect.DeepEqual(ms, tc.machines) {
				t.Errorf("machines = %+v, want %+v", ms, tc.machines)
			}
			if got := errors.Is(err, ErrIncomplete); got != tc.incomplete {
				t.Errorf("errors.Is(err, ErrIncomplete) = %v, want %v", got, tc.incomplete)
			}
		})
	}
}

// TestExecTimeoutKillsGroup: on timeout the whole process group is killed,
// a background child included, and the call returns promptly.
func TestExecTimeoutKillsGroup(t *testing.T) {
	e, dir := newExec(t, `sleep 60 & echo $! > "$PROVIDER_TEST_DIR/child"; sleep 60`, 300*time.Millisecond)
	start := time.Now()
	_, err := e.Status(context.Background(), "P")
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") || !strings.Contains(err.Error(), "status pool P") {
		t.Fatalf("err = %v, want a timeout of status pool P", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call took %v", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecCanceled: a canceled context stops the command and says so.
func TestExecCanceled(t *testing.T) {
	e, _ := newExec(t, `sleep 60`, 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := e.Delete(ctx, "P", []string{"n1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestExecBackgroundChildKeepsStdout: a command that exits 0 and leaves a
// child holding stdout still answers, after a bounded wait.
func TestExecBackgroundChildKeepsStdout(t *testing.T) {
	e, _ := newExec(t, `sleep 5 & echo '{"machines":[]}'`, 0)
	ms, err := e.Status(context.Background(), "P")
	if err != nil || len(ms) != 0 {
		t.Fatalf("status = %v, %v", ms, err)
	}
}

func TestExecMissingCommand(t *testing.T) {
	e, err := NewExec(ExecConfig{Command: filepath.Join(t.TempDir(), "nope")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Status(context.Background(), "P")
	if err == nil || !strings.Contains(err.Error(), "status pool P") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewExec(ExecConfig{}); err == nil {
		t.Error("NewExec without a command: no error")
	}
}

// processAlive reports whether pid is a live process (not a zombie).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestMachineJSON pins the wire shape scripts rely on.
func TestMachineJSON(t *testing.T) {
	b, _ := json.Marshal(Machine{ID: "n1", State: StateRunning})
	if string(b) != `{"id":"n1","state":"running"}` {
		t.Errorf("machine JSON = %s", b)
	}
}
