# One Monte Carlo task: throw n random points at the unit square, seeded by
# the task's index, and print how many fell inside the quarter circle, and n.
# Usage: awk -v seed=INDEX -v n=SAMPLES -f pi.awk
BEGIN {
	srand(seed)
	hits = 0
	for (i = 0; i < n; i++) {
		x = rand()
		y = rand()
		if (x * x + y * y <= 1)
			hits++
	}
	printf "%d %d\n", hits, n
}
