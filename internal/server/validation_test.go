package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// badRequest is one request the API must refuse, and how.
type badRequest struct {
	name    string
	method  string
	path    string
	body    string
	header  map[string]string
	status  int
	field   string           // error.field the answer must name ("" for none)
	rawBody func() io.Reader // a body too large to hold as a string
}

func post(name, path, body string, status int, field string) badRequest {
	return badRequest{name: name, method: http.MethodPost, path: path, body: body, status: status, field: field}
}

func get(name, path string, status int, field string) badRequest {
	return badRequest{name: name, method: http.MethodGet, path: path, status: status, field: field}
}

const (
	id65     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tplTrue  = `"template":{"command":["true"]}`
	taskTrue = `{"command":["true"]}`
)

var badRequests = []badRequest{
	// Pools.
	post("pool unknown field", "/v1/pools", `{"id":"x","bogus":1}`, 400, "bogus"),
	post("pool id with a space", "/v1/pools", `{"id":"a b"}`, 400, "id"),
	post("pool id of 65 characters", "/v1/pools", `{"id":"`+id65+`"}`, 400, "id"),
	post("pool id missing", "/v1/pools", `{}`, 400, "id"),
	post("pool id taken in another case", "/v1/pools", `{"id":"P"}`, 409, "id"),
	post("pool negative slots", "/v1/pools", `{"id":"x","slots_per_node":-1}`, 400, "slots_per_node"),
	post("pool overflowing slots", "/v1/pools", `{"id":"x","slots_per_node":1e400}`, 400, "slots_per_node"),
	post("pool slots as a string", "/v1/pools", `{"id":"x","slots_per_node":"4"}`, 400, "slots_per_node"),
	post("pool bad fill policy", "/v1/pools", `{"id":"x","fill_policy":"random"}`, 400, "fill_policy"),
	post("pool bad provider", "/v1/pools", `{"id":"x","provider":"aws"}`, 400, "provider"),
	post("pool negative target", "/v1/pools", `{"id":"x","target_nodes":-1}`, 400, "target_nodes"),
	post("pool negative prefill", "/v1/pools", `{"id":"x","prefill":-3}`, 400, "prefill"),
	post("pool bad label name", "/v1/pools", `{"id":"x","labels":{"bad key":"v"}}`, 400, "labels"),
	post("pool labels not an object", "/v1/pools", `{"id":"x","labels":["a"]}`, 400, "labels"),
	post("pool start task without command", "/v1/pools", `{"id":"x","start_task":{"command":[]}}`, 400, "start_task.command"),
	post("pool start task negative retries", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"max_retries":-1}}`, 400, "start_task.max_retries"),
	post("pool start task bad env", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"env":{"A=B":"c"}}}`, 400, "start_task.env"),
	post("pool start task input escaping", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"data://c/a","path":"../a"}]}}`, 400, "start_task.inputs[0].path"),
	post("pool start task input absolute", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"data://c/a","path":"a"},{"source":"data://c/b","path":"/etc/b"}]}}`, 400, "start_task.inputs[1].path"),
	post("pool start task input bad source", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"ftp://h/a","path":"a"}]}}`, 400, "start_task.inputs[0].source"),
	post("pool start task input source escaping", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"data://../etc/passwd","path":"a"}]}}`, 400, "start_task.inputs[0].source"),
	post("pool start task input bad mode", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"data://c/a","path":"a","mode":"rwx"}]}}`, 400, "start_task.inputs[0].mode"),
	post("pool start task input placeholder", "/v1/pools", `{"id":"x","start_task":{"command":["true"],"inputs":[{"source":"data://c/{job}","path":"a"}]}}`, 400, "start_task.inputs[0].source"),
	post("pool formula syntax", "/v1/pools", `{"id":"x","autoscale":{"formula":"min(3, pending_tasks"}}`, 400, "autoscale.formula"),
	post("pool formula unknown variable", "/v1/pools", `{"id":"x","autoscale":{"formula":"pending_jobs * 2"}}`, 400, "autoscale.formula"),
	post("pool formula blank", "/v1/pools", `{"id":"x","autoscale":{"formula":" "}}`, 400, "autoscale.formula"),
	post("pool formula interval under 1s", "/v1/pools", `{"id":"x","autoscale":{"formula":"1","interval":"500ms"}}`, 400, "autoscale.interval"),
	post("pool autoscale unknown field", "/v1/pools", `{"id":"x","autoscale":{"formula":"1","every":"1m"}}`, 400, "every"),
	post("pool max nodes under min", "/v1/pools", `{"id":"x","min_nodes":3,"max_nodes":2}`, 400, "max_nodes"),
	post("pool negative min nodes", "/v1/pools", `{"id":"x","min_nodes":-1}`, 400, "min_nodes"),
	post("pool negative price", "/v1/pools", `{"id":"x","price":-0.5}`, 400, "price"),
	post("pool negative spot price", "/v1/pools", `{"id":"x","spot_price":-1}`, 400, "spot_price"),
	post("pool bad deallocation", "/v1/pools", `{"id":"x","deallocation":"bogus"}`, 400, "deallocation"),
	post("pool exec without command", "/v1/pools", `{"id":"x","provider":"exec"}`, 400, "exec.command"),
	post("pool exec relative command", "/v1/pools", `{"id":"x","provider":"exec","exec":{"command":"bin/provider"}}`, 400, "exec.command"),
	post("pool exec for a static pool", "/v1/pools", `{"id":"x","exec":{"command":"/usr/bin/provider"}}`, 400, "exec"),
	post("pool exec for a local pool", "/v1/pools", `{"id":"x","provider":"local","exec":{"command":"/usr/bin/provider"}}`, 400, "exec"),
	post("resize negative", "/v1/pools/p/resize", `{"target_nodes":-1}`, 400, "target_nodes"),
	post("resize huge", "/v1/pools/p/resize", `{"target_nodes":99999999999999999999}`, 400, "target_nodes"),
	post("resize bad deallocation", "/v1/pools/p/resize", `{"target_nodes":1,"deallocation":"now"}`, 400, "deallocation"),
	post("resize negative spot", "/v1/pools/p/resize", `{"target_nodes":1,"target_spot_nodes":-1}`, 400, "target_spot_nodes"),
	post("resize an autoscaling pool", "/v1/pools/auto/resize", `{"target_nodes":1}`, 409, ""),
	post("autoscale enable without formula", "/v1/pools/p/autoscale/enable", `{}`, 400, "formula"),
	post("autoscale enable bad formula", "/v1/pools/auto/autoscale/enable", `{"formula":"pending_tasks +"}`, 400, "formula"),
	post("autoscale enable interval under 1s", "/v1/pools/auto/autoscale/enable", `{"interval":"100ms"}`, 400, "interval"),
	post("autoscale enable unknown field", "/v1/pools/auto/autoscale/enable", `{"formula":"1","enabled":true}`, 400, "enabled"),
	post("autoscale enable unknown pool", "/v1/pools/nope/autoscale/enable", `{"formula":"1"}`, 404, ""),
	post("autoscale disable unknown pool", "/v1/pools/nope/autoscale/disable", ``, 404, ""),
	post("autoscale eval without formula", "/v1/pools/p/autoscale/eval", `{}`, 400, "formula"),
	post("autoscale eval formula too long", "/v1/pools/auto/autoscale/eval", `{"formula":"`+strings.Repeat("1+", 2100)+`1"}`, 400, "formula"),
	post("autoscale eval unknown pool", "/v1/pools/nope/autoscale/eval", `{"formula":"1"}`, 404, ""),
	post("preempt unknown node", "/v1/nodes/nope/preempt", ``, 404, ""),
	post("resize unknown pool", "/v1/pools/nope/resize", `{"target_nodes":1}`, 404, ""),
	{name: "delete pool with jobs", method: http.MethodDelete, path: "/v1/pools/p", status: 409},
	get("show unknown pool", "/v1/pools/nope", 404, ""),
	get("nodes of unknown pool", "/v1/pools/nope/nodes", 404, ""),
	post("rotate unknown pool", "/v1/pools/nope/rotate-token", "", 404, ""),

	// Nodes.
	get("show unknown node", "/v1/nodes/nope", 404, ""),
	post("drain unknown node", "/v1/nodes/nope/drain", "", 404, ""),
	{name: "delete unknown node", method: http.MethodDelete, path: "/v1/nodes/nope", status: 404},

	// Jobs.
	post("job id taken in another case", "/v1/jobs", `{"id":"j","pool_id":"p"}`, 409, "id"),
	post("job without pool", "/v1/jobs", `{"id":"x"}`, 400, "pool_id"),
	post("job prep task without command", "/v1/jobs", `{"id":"x","pool_id":"p","prep_task":{"command":[]}}`, 400, "prep_task.command"),
	post("job release task too many retries", "/v1/jobs", `{"id":"x","pool_id":"p","release_task":{"command":["true"],"max_retries":101}}`, 400, "release_task.max_retries"),
	post("job prep task input escaping", "/v1/jobs", `{"id":"x","pool_id":"p","prep_task":{"command":["true"],"inputs":[{"source":"data://c/a","path":"a/../../b"}]}}`, 400, "prep_task.inputs[0].path"),
	post("job prep task input task placeholder", "/v1/jobs", `{"id":"x","pool_id":"p","prep_task":{"command":["true"],"inputs":[{"source":"data://c/{job}","path":"{index}"}]}}`, 400, "prep_task.inputs[0].path"),
	post("job release task input absolute", "/v1/jobs", `{"id":"x","pool_id":"p","release_task":{"command":["true"],"inputs":[{"source":"https://h/a","path":"/a"}]}}`, 400, "release_task.inputs[0].path"),
	post("job on unknown pool", "/v1/jobs", `{"id":"x","pool_id":"nope"}`, 400, "pool_id"),
	post("job burst to unknown pool", "/v1/jobs", `{"id":"x","pool_id":"p","burst_pool_ids":["nope"]}`, 400, "burst_pool_ids[0]"),
	post("job burst to a pool twice", "/v1/jobs", `{"id":"x","pool_id":"p","burst_pool_ids":["auto","AUTO"]}`, 400, "burst_pool_ids[1]"),
	post("job burst to its own pool", "/v1/jobs", `{"id":"x","pool_id":"p","burst_pool_ids":["P"]}`, 400, "burst_pool_ids[0]"),
	post("job burst pool bad id", "/v1/jobs", `{"id":"x","pool_id":"p","burst_pool_ids":["auto","a/b"]}`, 400, "burst_pool_ids[1]"),
	post("job burst to too many pools", "/v1/jobs", `{"id":"x","pool_id":"p","burst_pool_ids":["a","b","c","d","e","f","g","h"]}`, 400, "burst_pool_ids"),
	post("job id with a slash", "/v1/jobs", `{"id":"a/b","pool_id":"p"}`, 400, "id"),
	post("job id of 65 characters", "/v1/jobs", `{"id":"`+id65+`","pool_id":"p"}`, 400, "id"),
	post("job priority over 1000", "/v1/jobs", `{"pool_id":"p","priority":1001}`, 400, "priority"),
	post("job priority under -1000", "/v1/jobs", `{"pool_id":"p","priority":-1001}`, 400, "priority"),
	post("job priority overflowing", "/v1/jobs", `{"pool_id":"p","priority":1e400}`, 400, "priority"),
	post("job priority NaN as a string", "/v1/jobs", `{"pool_id":"p","priority":"NaN"}`, 400, "priority"),
	post("job priority fractional", "/v1/jobs", `{"pool_id":"p","priority":1.5}`, 400, "priority"),
	post("job max_retries -2", "/v1/jobs", `{"pool_id":"p","max_retries":-2}`, 400, "max_retries"),
	post("job bad duration", "/v1/jobs", `{"pool_id":"p","max_wall_clock":"5 minutes"}`, 400, "max_wall_clock"),
	post("job negative duration", "/v1/jobs", `{"pool_id":"p","max_wall_clock":"-5s"}`, 400, "max_wall_clock"),
	post("job duration as a number", "/v1/jobs", `{"pool_id":"p","max_wall_clock":30}`, 400, "max_wall_clock"),
	post("job bad on_all_tasks_complete", "/v1/jobs", `{"pool_id":"p","on_all_tasks_complete":"explode"}`, 400, "on_all_tasks_complete"),
	post("job empty tag name", "/v1/jobs", `{"pool_id":"p","tags":{"":"x"}}`, 400, "tags"),
	post("job tag name with =", "/v1/jobs", `{"pool_id":"p","tags":{"a=b":"x"}}`, 400, "tags"),
	post("job tag value with a newline", "/v1/jobs", `{"pool_id":"p","tags":{"run":"a\nb"}}`, 400, "tags.run"),
	post("job env name with =", "/v1/jobs", `{"pool_id":"p","env":{"A=B":"x"}}`, 400, "env"),
	post("job empty env name", "/v1/jobs", `{"pool_id":"p","env":{"":"x"}}`, 400, "env"),
	post("job env value not a string", "/v1/jobs", `{"pool_id":"p","env":{"A":1}}`, 400, "env"),
	post("job trailing data", "/v1/jobs", `{"pool_id":"p"} {}`, 400, "body"),
	post("job malformed JSON", "/v1/jobs", `{"pool_id":`, 400, "body"),
	post("job literal NaN", "/v1/jobs", `{"pool_id":"p","priority":NaN}`, 400, "body"),
	post("job empty body", "/v1/jobs", ``, 400, "body"),
	post("job body not an object", "/v1/jobs", `[1,2]`, 400, "body"),
	{name: "idempotency key too long", method: http.MethodPost, path: "/v1/jobs", body: `{"pool_id":"p"}`,
		header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, status: 400, field: "Idempotency-Key"},
	{name: "idempotency key reused for another request", method: http.MethodPost, path: "/v1/jobs", body: `{"id":"K2","pool_id":"p"}`,
		header: map[string]string{"Idempotency-Key": "k"}, status: 409, field: "Idempotency-Key"},
	{name: "priority out of range", method: http.MethodPatch, path: "/v1/jobs/J", body: `{"priority":5000}`, status: 400, field: "priority"},
	{name: "patch unknown field", method: http.MethodPatch, path: "/v1/jobs/J", body: `{"state":"completed"}`, status: 400, field: "state"},
	{name: "patch unknown job", method: http.MethodPatch, path: "/v1/jobs/nope", body: `{"priority":1}`, status: 404},
	{name: "delete unknown job", method: http.MethodDelete, path: "/v1/jobs/nope", status: 404},
	get("list jobs bad state", "/v1/jobs?state=running", 400, "state"),
	get("list jobs tag without value", "/v1/jobs?tag=run", 400, "tag"),
	get("list jobs bad tag name", "/v1/jobs?tag=a%20b=c", 400, "tag"),
	post("terminate by tag without tag", "/v1/jobs/terminate", "", 400, "tag"),
	post("terminate unknown job", "/v1/jobs/nope/terminate", "", 404, ""),
	post("retry without failed=true", "/v1/jobs/J/retry", "", 400, "failed"),
	post("retry failed of a completed job", "/v1/jobs/Done/retry?failed=true", "", 409, ""),
	get("show unknown job", "/v1/jobs/nope", 404, ""),
	get("wait negative groups", "/v1/jobs/J/wait?groups=-1", 400, "groups"),
	get("wait groups not a number", "/v1/jobs/J/wait?groups=1e3", 400, "groups"),
	get("wait timeout over 5m", "/v1/jobs/J/wait?groups=1&timeout=1h", 400, "timeout"),
	get("wait bad timeout", "/v1/jobs/J/wait?groups=1&timeout=soon", 400, "timeout"),

	// Tasks.
	post("task empty command", "/v1/jobs/J/tasks", `{"tasks":[{"command":[]}]}`, 400, "tasks[0].command"),
	post("task without command", "/v1/jobs/J/tasks", `{"tasks":[{"id":"x"}]}`, 400, "tasks[0].command"),
	post("task shell with 2 args", "/v1/jobs/J/tasks", `{"tasks":[{"command":["echo","hi"],"shell":true}]}`, 400, "tasks[0].command"),
	post("task unknown placeholder", "/v1/jobs/J/tasks", `{"tasks":[{"command":["echo","{bogus}"]}]}`, 400, "tasks[0].command[1]"),
	post("task unclosed placeholder", "/v1/jobs/J/tasks", `{"tasks":[{"command":["echo","{index"]}]}`, 400, "tasks[0].command[1]"),
	post("task NUL in argument", "/v1/jobs/J/tasks", `{"tasks":[{"command":["echo","a\u0000b"]}]}`, 400, "tasks[0].command[1]"),
	post("task command not strings", "/v1/jobs/J/tasks", `{"tasks":[{"command":[1]}]}`, 400, "tasks.command"),
	post("task id of 65 characters", "/v1/jobs/J/tasks", `{"tasks":[{"id":"`+id65+`","command":["true"]}]}`, 400, "tasks[0].id"),
	post("task id with a dot", "/v1/jobs/J/tasks", `{"tasks":[{"id":"a.b","command":["true"]}]}`, 400, "tasks[0].id"),
	post("task ids equal but for case", "/v1/jobs/J/tasks", `{"tasks":[{"id":"a","command":["true"]},{"id":"A","command":["true"]}]}`, 400, "tasks[1].id"),
	post("task id the job has", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"]},{"id":"3","command":["true"]}]}`, 409, "tasks[1].id"),
	post("task negative slots", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"slots":-1}}]}`, 400, "tasks[0].requirements.slots"),
	post("task overflowing memory", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"memory_bytes":1e400}}]}`, 400, "tasks.requirements.memory_bytes"),
	post("task cores as a string", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"cores":"2"}}]}`, 400, "tasks.requirements.cores"),
	post("task bad label name", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"labels":{"":"x"}}}]}`, 400, "tasks[0].requirements.labels"),
	post("task env name with a space", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"env":{"A B":"x"}}]}`, 400, "tasks[0].env"),
	post("task relative cwd", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"cwd":"rel/dir"}]}`, 400, "tasks[0].cwd"),
	post("task bad placeholder in cwd", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"cwd":"/x/{nope}"}]}`, 400, "tasks[0].cwd"),
	post("task max_retries -5", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"max_retries":-5}]}`, 400, "tasks[0].max_retries"),
	post("task bad duration", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"max_wall_clock":"1 day"}]}`, 400, "tasks.max_wall_clock"),
	post("task unknown field", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"priority":1}]}`, 400, "priority"),
	post("no tasks at all", "/v1/jobs/J/tasks", `{}`, 400, "tasks"),
	post("tasks and array both", "/v1/jobs/J/tasks", `{"tasks":[`+taskTrue+`],"array":"1-3",`+tplTrue+`}`, 400, "tasks"),
	post("array without template", "/v1/jobs/J/tasks", `{"array":"10-20"}`, 400, "template"),
	post("template with explicit tasks", "/v1/jobs/J/tasks", `{"tasks":[`+taskTrue+`],`+tplTrue+`}`, 400, "template"),
	post("template with an id", "/v1/jobs/J/tasks", `{"array":"10-20","template":{"id":"x","command":["true"]}}`, 400, "template.id"),
	post("array open range", "/v1/jobs/J/tasks", `{"array":"1-",`+tplTrue+`}`, 400, "array"),
	post("array reversed range", "/v1/jobs/J/tasks", `{"array":"9-1",`+tplTrue+`}`, 400, "array"),
	post("array zero step", "/v1/jobs/J/tasks", `{"array":"10-20:0",`+tplTrue+`}`, 400, "array"),
	post("array negative limit", "/v1/jobs/J/tasks", `{"array":"10-20%-1",`+tplTrue+`}`, 400, "array"),
	post("array letters", "/v1/jobs/J/tasks", `{"array":"a-z",`+tplTrue+`}`, 400, "array"),
	post("array over 10M tasks", "/v1/jobs/J/tasks", `{"array":"0-10000000",`+tplTrue+`}`, 400, "array"),
	post("array overlapping the job's", "/v1/jobs/J/tasks", `{"array":"3-8",`+tplTrue+`}`, 409, "array"),
	post("bad id prefix", "/v1/jobs/J/tasks", `{"array":"1-3","id_prefix":"a b",`+tplTrue+`}`, 400, "id_prefix"),
	post("line with a NUL", "/v1/jobs/J/tasks", `{"lines":["ok","a\u0000"],"id_prefix":"l",`+tplTrue+`}`, 400, "lines[1]"),
	post("tasks for unknown job", "/v1/jobs/nope/tasks", `{"tasks":[`+taskTrue+`]}`, 404, ""),
	post("tasks for completed job", "/v1/jobs/Done/tasks", `{"tasks":[`+taskTrue+`]}`, 409, ""),
	{name: "body over 64 MiB", method: http.MethodPost, path: "/v1/jobs/J/tasks", status: 413, field: "body",
		rawBody: func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"lines":["`), io.LimitReader(repeatReader('a'), 65<<20), strings.NewReader(`"]}`))
		}},
	get("list tasks limit 0", "/v1/jobs/J/tasks?limit=0", 400, "limit"),
	get("list tasks limit not a number", "/v1/jobs/J/tasks?limit=ten", 400, "limit"),
	get("list tasks limit too large", "/v1/jobs/J/tasks?limit=1000001", 400, "limit"),
	get("list tasks bad cursor", "/v1/jobs/J/tasks?next=garbage", 400, "next"),
	get("list tasks negative cursor", "/v1/jobs/J/tasks?next=-1:0", 400, "next"),
	get("list tasks bad state", "/v1/jobs/J/tasks?state=done", 400, "state"),
	get("list tasks of unknown job", "/v1/jobs/nope/tasks", 404, ""),
	get("show unknown task", "/v1/jobs/J/tasks/nope", 404, ""),
	get("unknown task file", "/v1/jobs/J/tasks/1/files/secret.txt", 404, ""),
	get("file path traversal", "/v1/jobs/J/tasks/1/files/..%2f..%2flote.db", 404, ""),
	get("file negative offset", "/v1/jobs/J/tasks/1/files/stdout.txt?offset=-1", 400, "offset"),
	get("file attempt 0", "/v1/jobs/J/tasks/1/files/stdout.txt?attempt=0", 400, "attempt"),
	post("retry a task that never ran", "/v1/jobs/J/tasks/1/retry", "", 409, ""),
	post("cancel a completed task", "/v1/jobs/Done/tasks/task-1/cancel", "", 409, ""),
	post("cancel unknown task", "/v1/jobs/J/tasks/nope/cancel", "", 404, ""),

	// Submit.
	post("submit priority out of range", "/v1/submit", `{"job":{"pool_id":"p","priority":-1001},"tasks":{"array":"1-2",`+tplTrue+`}}`, 400, "job.priority"),
	post("submit bad template", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"array":"1-2","template":{"command":[]}}}`, 400, "tasks.template.command"),
	post("submit duplicate task ids", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"tasks":[{"id":"a","command":["true"]},{"id":"A","command":["true"]}]}}`, 400, "tasks.tasks[1].id"),
	post("submit to a missing job", "/v1/submit", `{"job":{"id":"nope"},"existing":true,"tasks":{"tasks":[`+taskTrue+`]}}`, 404, ""),
	post("submit unknown package", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"array":"1-2","template":{"command":["true"],"apps":["nope"]}}}`, 400, "tasks.template.apps[0]"),
	post("submit unknown package version", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"tasks":[{"command":["true"],"apps":["nope@1"]}]}}`, 400, "tasks.tasks[0].apps[0]"),
	post("submit bad package name", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"tasks":[{"command":["true"],"apps":["../x"]}]}}`, 400, "tasks.tasks[0].apps[0]"),
	post("submit prep task input escaping", "/v1/submit", `{"job":{"pool_id":"p","prep_task":{"command":["true"],"inputs":[{"source":"data://c/a","path":"../a"}]}},"tasks":{"tasks":[`+taskTrue+`]}}`, 400, "job.prep_task.inputs[0].path"),
	post("submit job id taken", "/v1/submit", `{"job":{"id":"J","pool_id":"p"},"tasks":{"tasks":[`+taskTrue+`]}}`, 409, "job.id"),
	post("submit unknown pool", "/v1/submit", `{"job":{"pool_id":"nope"},"tasks":{"tasks":[`+taskTrue+`]}}`, 400, "job.pool_id"),
	post("submit burst to unknown pool", "/v1/submit", `{"job":{"pool_id":"p","burst_pool_ids":["auto","nope"]},"tasks":{"tasks":[`+taskTrue+`]}}`, 400, "job.burst_pool_ids[1]"),
	post("submit burst to a pool twice", "/v1/submit", `{"job":{"pool_id":"p","burst_pool_ids":["p"]},"tasks":{"tasks":[`+taskTrue+`]}}`, 400, "job.burst_pool_ids[0]"),
	post("submit nested unknown field", "/v1/submit", `{"job":{"pool_id":"p","colour":"red"},"tasks":{"tasks":[`+taskTrue+`]}}`, 400, "colour"),
	post("submit array overlapping", "/v1/submit", `{"job":{"id":"J"},"existing":true,"tasks":{"array":"5",`+tplTrue+`}}`, 409, "tasks.array"),

	// Bad JSON (B5): members named twice (encoding/json would silently keep
	// the last), nesting past any sane depth.
	post("duplicate member", "/v1/jobs", `{"id":"x","pool_id":"p","pool_id":"q"}`, 400, "pool_id"),
	post("duplicate member in another case", "/v1/jobs", `{"id":"x","pool_id":"p","POOL_ID":"q"}`, 400, "pool_id"),
	post("duplicate member escaped", "/v1/jobs", `{"id":"x","pool_id":"p","\u0070ool_id":"q"}`, 400, "pool_id"),
	post("duplicate env variable", "/v1/jobs", `{"id":"x","pool_id":"p","env":{"A":"1","B":"2","A":"3"}}`, 400, "env.A"),
	post("duplicate nested member", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"array":"1-2","template":{"command":["true"],"requirements":{"slots":1,"slots":64}}}}`, 400, "tasks.template.requirements.slots"),
	post("duplicate member in a list", "/v1/jobs/J/tasks", `{"tasks":[`+taskTrue+`,{"command":["true"],"command":["rm","-rf","/"]}]}`, 400, "tasks[1].command"),
	post("duplicate top-level member", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"tasks":[`+taskTrue+`]},"job":{"pool_id":"auto"}}`, 400, "job"),
	post("nested 100k arrays", "/v1/jobs", strings.Repeat("[", 100_000), 400, "body"),
	post("nested 100k objects in a field", "/v1/jobs", `{"pool_id":"p","tags":`+strings.Repeat(`{"a":`, 100_000), 400, "body"),
	post("nested 100k arrays closed", "/v1/jobs/J/tasks", `{"tasks":`+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`, 400, "body"),

	// Numbers (B6): 2^63, 2^32+1, NaN and infinities never wrap around.
	post("task slots 2^63", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"slots":9223372036854775808}}]}`, 400, "tasks.requirements.slots"),
	post("task slots 2^32+1", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"slots":4294967297}}]}`, 400, "tasks[0].requirements.slots"),
	post("task memory -2^63-1", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"memory_bytes":-9223372036854775809}}]}`, 400, "tasks.requirements.memory_bytes"),
	post("task retries 2^63", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"max_retries":9223372036854775808}]}`, 400, "tasks.max_retries"),
	post("job retries 2^32+1", "/v1/jobs", `{"pool_id":"p","max_retries":4294967297}`, 400, "max_retries"),
	post("job wall clock overflowing", "/v1/jobs", `{"pool_id":"p","max_wall_clock":"9999999999h"}`, 400, "max_wall_clock"),
	post("array bound 2^63", "/v1/jobs/J/tasks", `{"array":"1-9223372036854775808",`+tplTrue+`}`, 400, "array"),
	post("array limit 2^32+1", "/v1/jobs/J/tasks", `{"array":"10-20%4294967297",`+tplTrue+`}`, 400, "array"),
	post("task cores Infinity", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"requirements":{"cores":Infinity}}]}`, 400, "body"),
	post("pool slots NaN", "/v1/pools", `{"id":"x","slots_per_node":NaN}`, 400, "body"),
	post("pool slots 2^32+1", "/v1/pools", `{"id":"x","slots_per_node":4294967297}`, 400, "slots_per_node"),

	// Environments (B9): a value, or all of them together, too large.
	post("job env value over 128 KiB", "/v1/jobs", `{"pool_id":"p","env":{"BIG":"`+strings.Repeat("x", 128<<10+1)+`"}}`, 400, "env.BIG"),
	post("task env over 1 MiB in all", "/v1/jobs/J/tasks", `{"tasks":[{"command":["true"],"env":{`+manyVars(9, 120<<10)+`}}]}`, 400, "tasks[0].env"),
	post("submit template env over 1 MiB", "/v1/submit", `{"job":{"pool_id":"p"},"tasks":{"array":"1-2","template":{"command":["true"],"env":{`+manyVars(9, 120<<10)+`}}}}`, 400, "tasks.template.env"),
	post("job env over 4096 variables", "/v1/jobs", `{"pool_id":"p","env":{`+manyVars(4097, 1)+`}}`, 400, "env"),
	post("job env name with NUL", "/v1/jobs", `{"pool_id":"p","env":{"A\u0000B":"x"}}`, 400, "env"),
	post("job env value with NUL", "/v1/jobs", `{"pool_id":"p","env":{"A":"x\u0000y"}}`, 400, "env.A"),
}

// manyVars is n environment variables V0… of size bytes each, as JSON
// members.
func manyVars(n, size int) string {
	vars := make([]string, n)
	for i := range vars {
		vars[i] = fmt.Sprintf(`"V%d":"%s"`, i, strings.Repeat("v", size))
	}
	return strings.Join(vars, ",")
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestValidation sends each bad request to the real HTTP API and checks its
// status and error.field, and that the state (pools, jobs, tasks) is the
// same afterwards: nothing is half-applied.
func TestValidation(t *testing.T) {
	if len(badRequests) < 40 {
		t.Fatalf("only %d bad requests; the table must hold at least 40", len(badRequests))
	}
	env := testenv.Start(t)
	cl := env.Client
	ctx := context.Background()
	_, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p"})
	must(t, err)
	// An autoscaling pool, evaluated once (at once) and then not for an hour,
	// so the scaler changes nothing while the requests run.
	_, err = cl.CreatePool(ctx, api.PoolCreate{ID: "auto", Scaling: api.Scaling{
		Autoscale: &api.Autoscale{Formula: "min(2, pending_tasks)", Interval: api.Duration(time.Hour)}}})
	must(t, err)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p, err := cl.Pool(ctx, "auto", false); err == nil && len(p.AutoscaleRuns) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pool auto: no autoscale evaluation within 10s")
		}
	}
	_, err = cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "J", PoolID: "p"},
		Tasks: api.TaskAdd{Array: "1-5", Template: &api.TaskSpec{Command: []string{"true"}}}})
	must(t, err)
	_, err = cl.CreateJob(ctx, api.JobCreate{ID: "K1", PoolID: "p"}, api.IdempotencyKey("k"))
	must(t, err)
	_, err = cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "Done", PoolID: "p"},
		Tasks: api.TaskAdd{Tasks: []api.TaskSpec{{Command: []string{"true"}}}}})
	must(t, err)
	_, err = cl.CancelTask(ctx, "Done", "task-1")
	must(t, err)
	_, err = cl.TerminateJob(ctx, "Done")
	must(t, err)

	before := snapshot(t, cl)
	for _, tc := range badRequests {
		t.Run(tc.name, func(t *testing.T) {
			body := io.Reader(strings.NewReader(tc.body))
			if tc.rawBody != nil {
				body = tc.rawBody()
			}
			req, err := http.NewRequest(tc.method, env.Server.URL()+tc.path, body)
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+env.Server.AdminToken())
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var e api.Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%s %s: answer is not an error document: %v\n%s", tc.method, tc.path, err, b)
			}
			if resp.StatusCode != tc.status || e.Err.Field != tc.field || e.Err.Message == "" || e.Err.Code == "" {
				t.Errorf("%s %s: got %d field %q (%s: %s), want %d field %q",
					tc.method, tc.path, resp.StatusCode, e.Err.Field, e.Err.Code, e.Err.Message, tc.status, tc.field)
			}
			if resp.StatusCode == 400 && e.Err.Field == "" {
				t.Errorf("a 400 must name the field: %s", b)
			}
		})
	}
	if after := snapshot(t, cl); !bytes.Equal(before, after) {
		t.Errorf("state changed by refused requests:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot is the API's view of every pool, job and task.
func snapshot(t *testing.T, cl *api.Client) []byte {
	t.Helper()
	ctx := context.Background()
	pools, err := cl.Pools(ctx)
	must(t, err)
	jobs, err := cl.Jobs(ctx, "", nil)
	must(t, err)
	state := map[string]any{"pools": pools, "jobs": jobs}
	for _, j := range jobs {
		page, err := cl.Tasks(ctx, j.ID, "", 100000, "")
		must(t, err)
		state["tasks/"+j.ID] = page.Tasks
	}
	b, err := json.Marshal(state)
	must(t, err)
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
