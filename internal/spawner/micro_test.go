package spawner

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

func cpu(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkMicroCPU(b *testing.B) {
	const window = 64
	f := newFixture(b)
	f.serve(b, ServeConfig{})
	c := f.dial(b)
	acks := make([]string, 0, window)
	self, kids := cpu(syscall.RUSAGE_SELF), cpu(syscall.RUSAGE_CHILDREN)
	b.ResetTimer()
	for sent, done := 0, 0; done < b.N; {
		for ; sent < b.N && sent-done < window; sent++ {
			c.Spawn(SpawnRequest{ID: "t" + strconv.Itoa(sent), Argv: []string{"/bin/true"}})
		}
		e := <-c.Exits()
		done++
		if acks = append(acks, e.ID); len(acks) == cap(acks) || done == b.N {
			c.Ack(acks...)
			acks = acks[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "spawns/s")
	b.ReportMetric(float64(cpu(syscall.RUSAGE_SELF)-self)/float64(b.N)/1e3, "self-µs/op")
	b.ReportMetric(float64(cpu(syscall.RUSAGE_CHILDREN)-kids)/float64(b.N)/1e3, "kids-µs/op")
}
