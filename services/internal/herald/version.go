package herald

// Version and Revision identify the build of a service binary. The image
// build sets them with -ldflags "-X herald/services/internal/herald.Version=...
// -X herald/services/internal/herald.Revision=..." (VCS stamping is off in
// these builds, so the linker is where they come from); a plain `go build`
// leaves the defaults.
var (
	Version  = "dev"
	Revision = "unknown"
)
