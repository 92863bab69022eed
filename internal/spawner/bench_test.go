package spawner

import (
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSpawnTrue measures Spawn to Exit throughput of /bin/true, with up
// to 64 tasks in flight and acknowledgements batched as an agent would. It
// also reports the CPU time per spawn of this process (client and spawner)
// and of the tasks, which vary less than throughput on a busy machine. Its
// output goes to /dev/null, or to files as an agent's tasks' does (which
// /bin/true never creates).
func BenchmarkSpawnTrue(b *testing.B) {
	b.Run("devnull", func(b *testing.B) { benchSpawnTrue(b, false) })
	b.Run("files", func(b *testing.B) { benchSpawnTrue(b, true) })
}

func benchSpawnTrue(b *testing.B, files bool) {
	const window = 64
	f := newFixture(b)
	f.serve(b, ServeConfig{})
	c := f.dial(b)
	dir := b.TempDir()
	acks := make([]string, 0, window)
	self, tasks := cpuTime(syscall.RUSAGE_SELF), cpuTime(syscall.RUSAGE_CHILDREN)
	b.ResetTimer()
	for sent, done := 0, 0; done < b.N; {
		for ; sent < b.N && sent-done < window; sent++ {
			req := SpawnRequest{ID: "t" + strconv.Itoa(sent), Argv: []string{"/bin/true"}}
			if files {
				req.Stdout, req.Stderr = filepath.Join(dir, req.ID+".out"), filepath.Join(dir, req.ID+".err")
			}
			if err := c.Spawn(req); err != nil {
				b.Fatal(err)
			}
		}
		e, ok := <-c.Exits()
		if !ok {
			b.Fatal("exits closed")
		}
		if e.ExitCode != 0 {
			b.Fatalf("exit = %+v", e)
		}
		done++
		if acks = append(acks, e.ID); len(acks) == cap(acks) || done == b.N {
			if err := c.Ack(acks...); err != nil {
				b.Fatal(err)
			}
			acks = acks[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "spawns/s")
	perSpawn := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(perSpawn(cpuTime(syscall.RUSAGE_SELF)-self), "self-cpu-µs/op")
	b.ReportMetric(perSpawn(cpuTime(syscall.RUSAGE_CHILDREN)-tasks), "task-cpu-µs/op")
}

func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
