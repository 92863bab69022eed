package spawner

// InUse lists the IDs of the tasks recorded in a spawner's state directory
// that are running or whose exit no client has acknowledged yet: their
// output files may still be read. It reads the journal without the
// spawner's help, so a node's cleanup can run beside a live spawner.
func InUse(stateDir string) ([]string, error) {
	recs, err := readJournal(stateDir)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids, nil
}
