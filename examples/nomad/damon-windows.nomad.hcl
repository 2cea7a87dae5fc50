# A program run under damon.exe with Nomad's raw_exec driver on Windows (README, "Install"; docs/install.md).
# Nomad downloads damon.exe from the release and checks it against the line for
# damon-0.1.0-x86_64-windows.exe in that release's SHA256SUMS: put that hash in `checksum`.
# The workload here is ping, which every Windows has; put your program in its place
# (another artifact block brings it into the task directory).
job "damon-example-windows" {
  type = "service"

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "windows"
  }

  group "app" {
    network {
      port "damon" {} # damon serves its Prometheus metrics here (NOMAD_ADDR_damon)
    }

    # The metrics, for Prometheus's nomad_sd_configs (or Consul: provider = "consul").
    service {
      name     = "damon-example-windows-damon"
      port     = "damon"
      provider = "nomad"
      tags     = ["metrics"]
    }

    task "app" {
      driver = "raw_exec"

      artifact {
        source      = "https://github.com/OWNER/damon/releases/download/v0.1.0/damon-0.1.0-x86_64-windows.exe"
        destination = "local/damon.exe"
        mode        = "file"
        options {
          checksum = "sha256:<sha256 of damon-0.1.0-x86_64-windows.exe from SHA256SUMS>"
        }
      }

      config {
        command = "${NOMAD_TASK_DIR}/damon.exe"
        args    = ["C:\\Windows\\System32\\PING.EXE", "-t", "127.0.0.1"]
      }

      resources {
        cpu    = 500 # MHz: damon.exe caps the job's CPU rate at that share of the host
        memory = 256 # MiB: the job's memory limit
      }

      # Nomad's Windows executor stops a task with Ctrl+Break (kill_signal does not apply),
      # waits kill_timeout, then kills damon.exe; damon.exe has no timeout of its own under
      # Nomad, so ping gets all 30 s, and KILL_ON_JOB_CLOSE ends the job with damon.exe.
      kill_timeout = "30s"
    }
  }
}
