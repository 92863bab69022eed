package server

import (
	"net/http"
	"os"
	"syscall"
)

// CrashAfterCommitEnv names an environment variable for fault tests only:
// set to a request path (such as /v1/submit), the server kills itself with
// SIGKILL after the first change made through that path has committed and
// before it answers. That is the window in which a client cannot know
// whether its request took, which idempotency keys must make safe to retry
// (e2e TestIdempotencyAcrossCrash). Unset, it costs one comparison.
const CrashAfterCommitEnv = "LOTE_TEST_CRASH_AFTER_COMMIT"

// crashPoint is where a change has committed and its answer is not yet
// written.
func (s *Server) crashPoint(r *http.Request) {
	if s.crashAfterCommit != "" && r.URL.Path == s.crashAfterCommit {
		s.log.Warn("killing the server between commit and reply, as " + CrashAfterCommitEnv + " asks")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
