package api

// PoolList is GET /v1/pools.
type PoolList struct {
	Version string `json:"version"`
	Pools   []Pool `json:"pools"`
}

// NodeList is GET /v1/pools/{id}/nodes.
type NodeList struct {
	Version string `json:"version"`
	Nodes   []Node `json:"nodes"`
}
