// Command email-sender consumes the notification queue and sends each
// notification through SES v2 (or an SMTP relay). Configuration and contracts:
// services/README.md.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "email-sender:", err)
		os.Exit(1)
	}
}
