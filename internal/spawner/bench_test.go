package spawner

import (
	"strconv"
	"testing"
)

// BenchmarkSpawnTrue measures Spawn to Exit throughput of /bin/true, with up
// to 64 tasks in flight and acknowledgements batched as an agent would.
func BenchmarkSpawnTrue(b *testing.B) {
	const window = 64
	f := newFixture(b)
	f.serve(b, ServeConfig{})
	c := f.dial(b)
	acks := make([]string, 0, window)
	b.ResetTimer()
	for sent, done := 0, 0; done < b.N; {
		for ; sent < b.N && sent-done < window; sent++ {
			if err := c.Spawn(SpawnRequest{ID: "t" + strconv.Itoa(sent), Argv: []string{"/bin/true"}}); err != nil {
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
}
