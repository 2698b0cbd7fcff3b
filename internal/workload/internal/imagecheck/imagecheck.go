// Package imagecheck verifies images read back from a registry in the workload's tests.
package imagecheck

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Verify reads the config and every layer of img and checks each layer's bytes against
// its digest, so an image with a missing or corrupt blob fails.
func Verify(img v1.Image) error {
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	for _, l := range layers {
		want, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want, err)
		}
		got, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("read layer %s: %w", want, err)
		}
		if got != want {
			return fmt.Errorf("layer %s has digest %s", want, got)
		}
	}
	return nil
}
