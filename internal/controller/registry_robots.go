package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
	resources "github.com/dockyard-dev/dockyard/internal/resources/registry"
)

// reconcileRobots keeps the robots Secret (hashes, mounted by the pods) and each robot's
// credentials Secret in line with spec.auth.robots (see resources.PlanRobot), deletes the
// credentials of robots no longer listed, and returns when to look again. The hashes are
// written before the passwords, so a password is never handed out before the registry
// can know it.
func (r *RegistryReconciler) reconcileRobots(ctx context.Context, reg *v1alpha1.Registry) (time.Duration, error) {
	log := ctrl.LoggerFrom(ctx)
	var specs []v1alpha1.RobotAccount
	if reg.Spec.Auth != nil {
		specs = reg.Spec.Auth.Robots
	}
	var wait time.Duration
	if reg.Spec.Auth != nil {
		current := map[string]registryconfig.Robot{}
		key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.RobotsSecretName()}
		sec := &corev1.Secret{}
		var raw []byte
		switch err := r.APIReader.Get(ctx, key, sec); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return 0, fmt.Errorf("get Secret %s: %w", key, err)
		default:
			raw = sec.Data[registryconfig.RobotsKey]
			var rs registryconfig.Robots
			if err := json.Unmarshal(raw, &rs); err != nil {
				log.Error(err, "Robots Secret unreadable, issuing new credentials", "secret", key)
			}
			for _, rb := range rs.Robots {
				current[rb.User] = rb
			}
		}
		now := r.now()
		var robots []registryconfig.Robot
		passwords := map[string]resources.RobotPasswords{}
		var next time.Time
		for _, spec := range specs {
			pw, err := r.robotPasswords(ctx, reg, spec.Name)
			if err != nil {
				return 0, err
			}
			var cur *registryconfig.Robot
			if c, ok := current[v1alpha1.RobotUser(spec.Name)]; ok {
				cur = &c
			}
			robot, newPW, at, err := resources.PlanRobot(now, spec, cur, pw, resources.NewRobotPassword)
			if err != nil {
				return 0, fmt.Errorf("plan robot %s: %w", spec.Name, err)
			}
			robots = append(robots, robot)
			if newPW != pw {
				passwords[spec.Name] = newPW
			}
			if !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		desired, err := resources.RobotsSecret(reg, robots)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(desired.Data[registryconfig.RobotsKey], raw) {
			log.Info("Writing robot accounts", "secret", key, "robots", len(robots))
			if _, err := r.applier.Apply(ctx, desired, ""); err != nil {
				return 0, err
			}
		}
		for name, pw := range passwords {
			if pw.Current == "" {
				if err := r.deleteRobotSecret(ctx, reg, name); err != nil {
					return 0, err
				}
				continue
			}
			s, err := resources.RobotSecret(reg, name, pw, r.ClusterDomain)
			if err != nil {
				return 0, err
			}
			log.Info("Writing robot credentials", "secret", client.ObjectKeyFromObject(s), "rotating", pw.Pending != "")
			if _, err := r.applier.Apply(ctx, s, ""); err != nil {
				return 0, err
			}
			if pw.Pending != "" {
				r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "RobotCredentialRotated", "RotateRobotCredential",
					"Issued a new password for robot %s; it replaces the current one in Secret %s in %s", name, s.Name, resources.RobotPublishLead)
			}
		}
		if !next.IsZero() {
			wait = max(time.Second, next.Sub(now))
		}
	}
	// Credentials of robots no longer listed (or of every robot, with auth off).
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.Client.List(ctx, list, client.InNamespace(reg.Namespace),
		client.MatchingLabels{resources.LabelRegistry: reg.Name}, client.HasLabels{resources.LabelRobot}); err != nil {
		return 0, fmt.Errorf("list robot Secrets of Registry %s/%s: %w", reg.Namespace, reg.Name, err)
	}
	listed := map[string]bool{}
	for _, s := range specs {
		listed[s.Name] = true
	}
	for _, item := range list.Items {
		if name := item.Labels[resources.LabelRobot]; !listed[name] {
			log.Info("Revoking robot: no longer in spec.auth.robots", "robot", name)
			if err := r.deleteRobotSecret(ctx, reg, name); err != nil {
				return 0, err
			}
			r.Recorder.Eventf(reg, nil, corev1.EventTypeNormal, "RobotRevoked", "RevokeRobot",
				"Revoked robot %s (removed from spec.auth.robots) and deleted its Secret", name)
		}
	}
	if reg.Spec.Auth == nil {
		if err := r.deleteSecret(ctx, reg, reg.RobotsSecretName()); err != nil {
			return 0, err
		}
	}
	return wait, nil
}

// robotPasswords reads a robot's passwords from its Secret (empty when absent).
func (r *RegistryReconciler) robotPasswords(ctx context.Context, reg *v1alpha1.Registry, name string) (resources.RobotPasswords, error) {
	sec := &corev1.Secret{}
	key := client.ObjectKey{Namespace: reg.Namespace, Name: reg.RobotSecretName(name)}
	switch err := r.APIReader.Get(ctx, key, sec); {
	case apierrors.IsNotFound(err):
		return resources.RobotPasswords{}, nil
	case err != nil:
		return resources.RobotPasswords{}, fmt.Errorf("get Secret %s: %w", key, err)
	}
	return resources.RobotPasswords{
		Current: string(sec.Data[registryconfig.RobotPasswordKey]),
		Pending: string(sec.Data[registryconfig.RobotPendingPasswordKey]),
	}, nil
}

func (r *RegistryReconciler) deleteRobotSecret(ctx context.Context, reg *v1alpha1.Registry, name string) error {
	return r.deleteSecret(ctx, reg, reg.RobotSecretName(name))
}
