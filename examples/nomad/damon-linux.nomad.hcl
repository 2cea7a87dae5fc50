# A web server run under damon with Nomad's raw_exec driver on Linux (README, "Install"; docs/install.md).
# Nomad downloads damon from the release and checks it against the line for
# damon-0.1.0-x86_64-linux in that release's SHA256SUMS: put that hash in `checksum`
# (for an arm64 client, use damon-0.1.0-aarch64-linux and its line). The workload here is
# python3's web server, from the client host; put your program in its place.
job "damon-example-linux" {
  type = "service"

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "web" {
    network {
      port "damon" {} # damon serves its Prometheus metrics here (NOMAD_ADDR_damon)
      port "http" {}
    }

    # The metrics, for Prometheus's nomad_sd_configs (or Consul: provider = "consul").
    service {
      name     = "damon-example-linux-damon"
      port     = "damon"
      provider = "nomad"
      tags     = ["metrics"]
    }

    service {
      name     = "damon-example-linux-http"
      port     = "http"
      provider = "nomad"
    }

    task "web" {
      driver = "raw_exec"

      artifact {
        source      = "https://github.com/OWNER/damon/releases/download/v0.1.0/damon-0.1.0-x86_64-linux"
        destination = "local/damon"
        mode        = "file"
        options {
          checksum = "sha256:<sha256 of damon-0.1.0-x86_64-linux from SHA256SUMS>"
        }
      }

      config {
        # Nomad's executor sets the execute bits on the command it starts.
        command = "${NOMAD_TASK_DIR}/damon"
        args    = ["/usr/bin/python3", "-m", "http.server", "${NOMAD_PORT_http}", "--bind", "${NOMAD_IP_http}"]
      }

      resources {
        cpu    = 500 # MHz: damon caps the tree at 500 MHz worth of a core
        memory = 256 # MiB: the hard limit of the whole tree
      }

      # Nomad sends kill_signal, waits kill_timeout, then kills damon; damon has no timeout of
      # its own under Nomad, so the server gets all 30 s, and damon's guard ends what is left.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      env {
        DAMON_RESTRICTED_TOKEN = "Y" # the web server runs as nobody, without capabilities
      }
    }
  }
}
