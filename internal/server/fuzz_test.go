package server

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// FuzzSubmitDecoding feeds arbitrary bodies through the submit path: strict
// decoding, validation and the core's all-or-nothing job creation. It must
// never panic; a refused request must be a FieldError or an httpError and
// leave the core without a job; an accepted one must leave exactly one.
func FuzzSubmitDecoding(f *testing.F) {
	for _, seed := range []string{
		`{"job":{"pool_id":"p"},"tasks":{"array":"1-3","template":{"command":["true"]}}}`,
		`{"job":{"pool_id":"p","priority":5},"tasks":{"lines":["a","b"],"template":{"command":["echo","{line}"]}}}`,
		`{"job":{"pool_id":"p","max_wall_clock":"1s"},"tasks":{"tasks":[{"id":"x","command":["sh","-c","exit 3"],"shell":false}]}}`,
		`{"job":{"pool_id":"p"},"tasks":{"array":"1-10%2","template":{"command":["{index}"],"requirements":{"slots":2,"cores":1,"memory_bytes":1024,"labels":{"a":"b"}}}}}`,
		`{"job":{"pool_id":"p"},"tasks":{"array":"5-1","template":{"command":["true"]}}}`,
		`{"job":{"pool_id":"p","env":{"A":"1"},"tags":{"t":"v"}},"tasks":{"tasks":[{"command":["true"],"max_retries":-1,"cwd":"/tmp"}]}}`,
		`{"job":{"pool_id":"p"},"tasks":{"array":"1-2","template":{"command":["x"],"shell":true}},"unknown":1}`,
		`{}`, `[]`, `{"job":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c := core.New(core.Config{}, coretest.Nop{})
		coretest.Pool(c, "p", 2)
		var in api.Submit
		r := httptest.NewRequest("POST", "/v1/submit", bytes.NewReader(body))
		if err := decode(r, &in); err != nil {
			wantRefusal(t, err)
			return
		}
		spec, err := jobSpec(in.Job, "admin")
		if err != nil {
			wantRefusal(t, err)
			return
		}
		add, err := taskAdd(in.Tasks, spec.MaxRetries)
		if err != nil {
			wantRefusal(t, err)
			return
		}
		_, _, err = c.CreateJobWithTasks(spec, add, time.Unix(0, 0))
		if err != nil {
			if len(c.Jobs()) != 0 {
				t.Fatalf("a refused submit left %d job(s)", len(c.Jobs()))
			}
			return
		}
		if len(c.Jobs()) != 1 {
			t.Fatalf("an accepted submit left %d jobs", len(c.Jobs()))
		}
		c.Schedule(time.Unix(1, 0))
	})
}

func wantRefusal(t *testing.T, err error) {
	t.Helper()
	var he *httpError
	var fe *core.FieldError
	if !errors.As(err, &he) && !errors.As(err, &fe) {
		t.Fatalf("refusal is %T (%v), not a field error", err, err)
	}
}
