package web

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// maxSessions bounds the table: past it, the oldest sessions are dropped.
const maxSessions = 4096

// Sessions maps the random IDs the dashboard's cookie holds to the token
// that signed in, so the token itself never reaches the browser's
// JavaScript or its cookie jar. Sessions live in memory: a server restart
// signs everyone out. The zero value is ready to use.
type Sessions struct {
	mu sync.Mutex
	m  map[string]session
}

type session struct {
	token   string
	expires time.Time
}

// New starts a session for token and returns its ID.
func (s *Sessions) New(token string, now time.Time) string {
	var b [32]byte
	rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]session{}
	}
	if len(s.m) >= maxSessions {
		s.evict(now)
	}
	s.m[id] = session{token: token, expires: now.Add(SessionTTL)}
	return id
}

// evict drops expired sessions and, if the table is still full, the one
// closest to expiry.
func (s *Sessions) evict(now time.Time) {
	var oldest string
	for id, se := range s.m {
		if !now.Before(se.expires) {
			delete(s.m, id)
		} else if oldest == "" || se.expires.Before(s.m[oldest].expires) {
			oldest = id
		}
	}
	if len(s.m) >= maxSessions {
		delete(s.m, oldest)
	}
}

// Token returns the token of a live session.
func (s *Sessions) Token(id string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return "", false
	}
	if !now.Before(se.expires) {
		delete(s.m, id)
		return "", false
	}
	return se.token, true
}

// End forgets a session.
func (s *Sessions) End(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}
