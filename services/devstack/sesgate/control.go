package sesgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"herald/services/devstack/loopback"
)

// serveControl answers the gate's own endpoints:
//
//	GET    /_gate/sends[?since=<unix ms>]  {"sends":[Send...]}
//	GET    /_gate/events                   {"events":[PublishedEvent...]}
//	GET    /_gate/autoreplies              {"autoReplies":[AutoReply...]}
//	GET    /_gate/suppression              {"suppressed":[Suppressed...]}
//	GET    /_gate/sns-certificate.pem      the certificate SNS envelopes are signed with
//	GET    /_gate/stats                    Stats
//	PUT    /_gate/fault                    body Fault; starts it
//	DELETE /_gate/fault                    ends it
//	POST   /_gate/reset                    forgets sends and counters
func (g *Gate) serveControl(w http.ResponseWriter, r *http.Request) {
	switch route := r.Method + " " + r.URL.Path; route {
	case "GET /_gate/sends":
		var since int64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				http.Error(w, "since must be a Unix time in milliseconds", http.StatusBadRequest)
				return
			}
			since = n
		}
		sends := []Send{}
		for _, s := range g.Sends() {
			if s.AtMs >= since {
				sends = append(sends, s)
			}
		}
		writeJSON(w, http.StatusOK, map[string][]Send{"sends": sends})
	case "GET /_gate/events":
		writeJSON(w, http.StatusOK, map[string][]PublishedEvent{"events": nonNil(g.Published())})
	case "GET /_gate/autoreplies":
		writeJSON(w, http.StatusOK, map[string][]AutoReply{"autoReplies": nonNil(g.AutoReplies())})
	case "GET /_gate/suppression":
		writeJSON(w, http.StatusOK, map[string][]Suppressed{"suppressed": g.SuppressedList()})
	case "GET " + certificatePath:
		cert, err := g.signer.certificate()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(cert)
	case "GET /_gate/stats":
		writeJSON(w, http.StatusOK, g.Stats())
	case "PUT /_gate/fault":
		var f Fault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := g.SetFault(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "DELETE /_gate/fault":
		g.ClearFault()
		w.WriteHeader(http.StatusNoContent)
	case "POST /_gate/reset":
		g.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "unknown gate endpoint "+route, http.StatusNotFound)
	}
}

// certificatePath is where the SNS signing certificate is served.
const certificatePath = "/_gate/sns-certificate.pem"

// Server is a gate listening on an address.
type Server struct {
	*Gate
	// URL is the base URL for AWS_ENDPOINT_URL_SESV2.
	URL  string
	http *loopback.Server
}

// Start makes a gate and serves it on addr, a loopback address
// ("127.0.0.1:0" picks a port).
func Start(addr string, cfg Config) (*Server, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := loopback.Serve(addr, g)
	if err != nil {
		return nil, fmt.Errorf("sesgate: %w", err)
	}
	return &Server{Gate: g, URL: srv.URL, http: srv}, nil
}

// Close stops serving, waiting briefly for requests in flight.
func (s *Server) Close() error {
	s.Gate.Close() // calls held by a hang end now; queued events go out
	return s.http.Close()
}
