package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loader is the load generator: a fixed number of notifications posted to
// the API one at a time by a fixed number of concurrent clients (a closed
// loop: each client posts its next notification once the last is answered).
type loader struct {
	url, key    string
	concurrency int
	keyed       bool // each post with an Idempotency-Key (its subject)
	http        *http.Client
}

func newLoader(apiURL, key string, concurrency int, keyed bool) *loader {
	return &loader{
		url:         apiURL + "/api/notifications",
		key:         key,
		concurrency: concurrency,
		keyed:       keyed,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
				MaxIdleConns:        concurrency,
				MaxIdleConnsPerHost: concurrency,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
		},
	}
}

// post is one notification's request and answer.
type post struct {
	subject string
	start   time.Time
	end     time.Time // when the answer was read
	status  int
	err     error
}

// accepted: the API answered 202, so the notification is on the queue.
func (p *post) accepted() bool { return p.err == nil && p.status == http.StatusAccepted }

// latency is the API's answer time as the client saw it.
func (p *post) latency() time.Duration { return p.end.Sub(p.start) }

// run posts n notifications whose subjects are prefix and their number, and
// returns one post per notification, in number order. With rate 0 the
// clients post back to back (a closed loop); with a rate, notification i is
// posted at i/rate seconds after the start, by whichever client is free (an
// open loop, as long as a client is free: a late start is counted in the
// post's latency).
func (l *loader) run(ctx context.Context, prefix string, n int, rate float64) []post {
	posts := make([]post, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range l.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				var due time.Time
				if rate > 0 {
					due = start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				}
				posts[i] = l.post(ctx, fmt.Sprintf("%s%d", prefix, i))
				if !due.IsZero() && due.Before(posts[i].start) {
					posts[i].start = due
				}
			}
		})
	}
	wg.Wait()
	return posts
}

// notification is the request body: one recipient, a subject that names
// the notification, and a short text and HTML body.
type notification struct {
	To      []string `json:"to"`
	Subject string   `json:"subject"`
	Text    string   `json:"text"`
	HTML    string   `json:"html"`
}

const (
	benchText = "Your order has shipped. It should arrive within three working days; the tracking link is in your account."
	benchHTML = "<p>Your order has <b>shipped</b>. It should arrive within three working days; the tracking link is in your account.</p>"
)

func (l *loader) post(ctx context.Context, subject string) post {
	p := post{subject: subject}
	body, err := json.Marshal(notification{To: []string{"reader@example.org"}, Subject: subject, Text: benchText, HTML: benchHTML})
	if err != nil {
		p.err = err
		return p
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		p.err = err
		return p
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.key)
	if l.keyed {
		// Subjects are unique to the run: so are the keys.
		req.Header.Set("Idempotency-Key", strconv.Quote(subject))
	}
	p.start = time.Now()
	resp, err := l.http.Do(req)
	if err != nil {
		p.end, p.err = time.Now(), err
		return p
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.end, p.status, p.err = time.Now(), resp.StatusCode, err
	return p
}

func (l *loader) close() { l.http.CloseIdleConnections() }
