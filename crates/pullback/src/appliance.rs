//! `pullback appliance`: what the appliance image runs at boot. First boot (answers from a
//! config disk, cloud user data or the console wizard, then the node's configuration and
//! cluster identity), the node's system settings at every boot, and the console report.
//! The decisions live in `pullback_appliance`; this file does the system calls.

use anyhow::{Context, bail};
use clap::Subcommand;
use pullback_appliance::answers::{Answers, ClusterMode, NetworkMode};
use pullback_appliance::boot::write_synced;
use pullback_appliance::settings::Settings;
use pullback_appliance::upgrade::Appliance;
use pullback_appliance::userdata::{self, Imds, UserDataSource};
use pullback_appliance::{Layout, wizard};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the node's configuration is, as the node sees it (a bind mount of /data/etc).
pub const NODE_CONFIG: &str = "/etc/pullback/pullback.toml";
const CONFIG_MOUNT: &str = "/run/pullback-config";

#[derive(Subcommand)]
pub enum ApplianceCommand {
    /// First boot: reads the answers (config disk, cloud user data, or the console wizard),
    /// writes the node's configuration and settings, and creates or joins the cluster.
    Firstboot {
        /// Read the answers from this file instead.
        #[arg(long)]
        answers: Option<PathBuf>,
    },
    /// Applies the node's settings (hostname, network, time, console password); every boot.
    ApplySettings,
    /// Prints which slot and release booted, and where the web UI is, on every console.
    Report,
}

pub async fn run(command: ApplianceCommand) -> anyhow::Result<()> {
    let layout = Layout::system();
    match command {
        ApplianceCommand::Firstboot { answers } => {
            let done = firstboot(&layout, answers.as_deref()).await;
            if let Err(e) = &done {
                announce(&format!(
                    "first boot failed: {e:#}; the node does not start until the next boot's \
                     first boot succeeds"
                ));
            }
            done
        }
        ApplianceCommand::ApplySettings => apply_settings(&layout),
        ApplianceCommand::Report => report(&layout),
    }
}

/// Writes a line to the journal and to every console the kernel writes to (the screen and
/// the serial port), so that both an administrator and the image tests see it.
pub fn announce(line: &str) {
    tracing::info!("{line}");
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    for name in active.split_whitespace() {
        // O_NOCTTY | O_NONBLOCK: never become the console's controlling process, never wait
        // for a serial line that nobody reads.
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o400 | 0o4000)
            .open(Path::new("/dev").join(name));
        if let Ok(mut console) = opened {
            let _ = write!(console, "\r\npullback-appliance: {line}\r\n");
        }
    }
}

fn report(layout: &Layout) -> anyhow::Result<()> {
    let appliance = Appliance::new(layout.clone());
    let (slot, trial) = appliance.booted()?;
    let release = appliance.current_release()?;
    let trying = if trial { ", trying it" } else { "" };
    announce(&format!(
        "booted slot {slot}, release {} (data format {}){trying}",
        release.version, release.data_format
    ));
    if layout.firstboot_done().exists() {
        let address = local_address().map_or("this node's address".into(), |ip| ip.to_string());
        announce(&format!("web UI and API: https://{address}/"));
    }
    Ok(())
}

fn apply_settings(layout: &Layout) -> anyhow::Result<()> {
    // The node's group may leave upgrade images here; root takes them (`upgrade inbox`).
    let inbox = layout.upgrade_inbox();
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("cannot create {}", inbox.display()))?;
    give_to_service(&inbox, 0o2770)?;
    let Some(settings) = Settings::load(layout)? else {
        return Ok(());
    };
    settings.apply(layout)?;
    if let Some(hash) = &settings.console_password_hash {
        run_quiet(Command::new("usermod").args(["-p", hash, "root"]))
            .context("cannot set root's console password")?;
    }
    Ok(())
}

async fn firstboot(layout: &Layout, answers_file: Option<&Path>) -> anyhow::Result<()> {
    if layout.firstboot_done().exists() {
        return Ok(());
    }
    let (answers, answers_dir) = read_answers(layout, answers_file)?;
    announce(&format!("first boot: setting up {}", answers.hostname));

    let mut settings = Settings::from_answers(&answers);
    settings.console_password_hash = Some(set_root_password(&answers.admin.password.0)?);
    settings.save(layout)?;
    settings.apply(layout)?;
    // networkd picks up the file written into /run.
    let _ = run_quiet(Command::new("networkctl").arg("reload"));

    let host = advertised_host(&answers)?;
    let config_dir = layout.node_config_dir();
    if let Some(tls) = &answers.tls {
        let dir = answers_dir
            .as_deref()
            .context("tls certificate files need a config disk to come from")?;
        install_node_file(&dir.join(&tls.cert_file), &config_dir.join("api.crt"))?;
        install_node_file(&dir.join(&tls.key_file), &config_dir.join("api.key"))?;
    }
    let admin_hash =
        pullback_api::hash_password(&answers.admin.password.0).map_err(anyhow::Error::msg)?;
    let mut config = answers.node_config(&host, &admin_hash);
    config.push_str(&appliance_api_key(layout)?);
    let config_path = config_dir.join("pullback.toml");
    write_synced(&config_path, config.as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    give_to_service(&config_path, 0o640)?;
    unmount_config_disk();

    create_or_join(&answers)?;
    write_synced(
        &layout.firstboot_done(),
        format!("{}\n", now_secs()).as_bytes(),
    )?;
    announce(&format!(
        "first boot done: node {} of a {} cluster, web UI at https://{host}/",
        answers.cluster.node_id,
        match answers.cluster.mode {
            ClusterMode::New => "new",
            ClusterMode::Join => "joined",
        }
    ));
    Ok(())
}

/// The answers and the folder they came from (for certificate files), from the first
/// source that has them.
fn read_answers(
    layout: &Layout,
    answers_file: Option<&Path>,
) -> anyhow::Result<(Answers, Option<PathBuf>)> {
    let from_file = |path: &Path| -> anyhow::Result<Answers> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the answers {}", path.display()))?;
        checked(Answers::parse(&text).map_err(anyhow::Error::msg), path)
    };
    if let Some(path) = answers_file {
        return Ok((from_file(path)?, path.parent().map(Path::to_path_buf)));
    }
    if let Some(dir) = mount_config_disk()? {
        let path = dir.join(userdata::ANSWERS_FILE);
        announce(&format!(
            "first boot: answers from the config disk ({})",
            path.display()
        ));
        return Ok((from_file(&path)?, Some(dir)));
    }
    if userdata::user_data_source(layout) == UserDataSource::Aws {
        if userdata::is_ec2(layout) {
            announce("first boot: reading the answers from the EC2 user data");
            if let Some(text) = Imds::aws()
                .user_data()
                .context("cannot read the user data")?
            {
                let answers = Answers::parse(&text).map_err(anyhow::Error::msg);
                return Ok((checked(answers, Path::new("EC2 user data"))?, None));
            }
            announce("first boot: the instance has no user data; asking on the console");
        } else {
            announce(
                "first boot: the image reads AWS user data, but this machine is not an EC2 \
                 instance; the metadata service is not asked",
            );
        }
    }
    Ok((ask_on_console()?, None))
}

fn checked(answers: anyhow::Result<Answers>, from: &Path) -> anyhow::Result<Answers> {
    let answers = answers.with_context(|| format!("{} does not parse", from.display()))?;
    let problems = answers.problems();
    if !problems.is_empty() {
        bail!("{} cannot be used: {}", from.display(), problems.join("; "));
    }
    Ok(answers)
}

fn ask_on_console() -> anyhow::Result<Answers> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no config disk, no user data, and no console to ask on");
    }
    let mut hide = |on: bool| {
        let _ = Command::new("stty")
            .arg(if on { "-echo" } else { "echo" })
            .stdin(Stdio::inherit())
            .status();
    };
    loop {
        let stdin = std::io::stdin();
        let answers = wizard::Console::new(stdin.lock(), std::io::stdout(), &mut hide).run()?;
        let problems = answers.problems();
        if problems.is_empty() {
            return Ok(answers);
        }
        println!(
            "These answers cannot be used: {}\nOnce more.",
            problems.join("; ")
        );
    }
}

/// Mounts the config disk read-only when one is attached; waits a little for udev.
fn mount_config_disk() -> anyhow::Result<Option<PathBuf>> {
    let device = Path::new("/dev/disk/by-label").join(userdata::CONFIG_LABEL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !device.exists() {
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::create_dir_all(CONFIG_MOUNT)?;
    run_quiet(
        Command::new("mount")
            .args(["-t", "vfat", "-o", "ro,nodev,nosuid,noexec"])
            .args([device.as_os_str(), CONFIG_MOUNT.as_ref()]),
    )
    .with_context(|| format!("cannot mount the config disk {}", device.display()))?;
    Ok(Some(PathBuf::from(CONFIG_MOUNT)))
}

fn unmount_config_disk() {
    if Path::new(CONFIG_MOUNT).exists() {
        let _ = run_quiet(Command::new("umount").arg(CONFIG_MOUNT));
    }
}

/// Sets root's password with chpasswd and returns the crypt hash it stored, which the
/// settings keep so that every slot gets the same password.
fn set_root_password(password: &str) -> anyhow::Result<String> {
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run chpasswd")?;
    child
        .stdin
        .take()
        .context("chpasswd has no input")?
        .write_all(format!("root:{password}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("chpasswd could not set root's password");
    }
    let shadow = std::fs::read_to_string("/etc/shadow")?;
    shadow
        .lines()
        .find_map(|line| line.strip_prefix("root:"))
        .and_then(|rest| rest.split(':').next())
        .map(str::to_string)
        .context("/etc/shadow has no root entry")
}

/// The name or address peers reach this node by: the answer, the static address, or the
/// address of the default route once the network is up.
fn advertised_host(answers: &Answers) -> anyhow::Result<String> {
    if let Some(host) = &answers.cluster.advertise {
        return Ok(host.clone());
    }
    if answers.network.mode == NetworkMode::Static
        && let Some(address) = &answers.network.address
    {
        return Ok(address.split('/').next().unwrap_or(address).to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(ip) = local_address() {
            return Ok(ip.to_string());
        }
        if Instant::now() > deadline {
            bail!("the network did not come up within two minutes (no default route)");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The address peers reach this node by: the source address of the default route, or, on a
/// network without a gateway, of the first subnet an interface is on. Connecting a UDP socket
/// sends nothing; it only asks the kernel which address it would use (192.0.2.1 is a
/// documentation address).
fn local_address() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    std::iter::once(Ipv4Addr::new(192, 0, 2, 1))
        .chain(subnet_probes(&routes))
        .find_map(source_address)
}

fn source_address(destination: Ipv4Addr) -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((destination, 9)).ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
}

/// One address inside each subnet route of `/proc/net/route` (its table is in host byte
/// order, hexadecimal), loopback and the default route left out.
fn subnet_probes(routes: &str) -> Vec<Ipv4Addr> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let network = Ipv4Addr::from(u32::from_be(destination));
            let mask = Ipv4Addr::from(u32::from_be(mask));
            if fields[0] == "lo" || network.is_unspecified() || mask == Ipv4Addr::BROADCAST {
                return None;
            }
            Some(Ipv4Addr::from(u32::from(network) | 1))
        })
        .collect()
}

/// The appliance's own read-only API key, for the upgrade health check: kept on the data
/// partition (root only), its hash in the node's configuration.
fn appliance_api_key(layout: &Layout) -> anyhow::Result<String> {
    let key = crate::server::new_api_key()?;
    let path = appliance_key_path(layout);
    write_synced(&path, key.as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(format!(
        "\n# The appliance's own key: its upgrade health check reads the cluster's state.\n\
         [[api_keys]]\nname = \"appliance\"\nrole = \"read_only\"\nsha256 = {:?}\n",
        hex::encode(pullback_api::hash_key(&key))
    ))
}

pub fn appliance_key_path(layout: &Layout) -> PathBuf {
    layout.appliance_dir().join("api.key")
}

fn install_node_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write_synced(to, &bytes).with_context(|| format!("cannot write {}", to.display()))?;
    give_to_service(to, 0o640)
}

/// Makes a file root's and readable by the service's group.
fn give_to_service(path: &Path, mode: u32) -> anyhow::Result<()> {
    let gid = service_gid()?;
    std::os::unix::fs::chown(path, Some(0), Some(gid))
        .with_context(|| format!("cannot give {} to the pullback group", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn service_gid() -> anyhow::Result<u32> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("pullback")).then(|| fields.nth(1)?.parse().ok())?
        })
        .context("/etc/group has no pullback group")
}

fn create_or_join(answers: &Answers) -> anyhow::Result<()> {
    let mut command = Command::new("runuser");
    command.args(["-u", "pullback", "--", "/usr/bin/pullback", "cluster"]);
    match answers.cluster.mode {
        ClusterMode::New => {
            command.args(["init", "--config", NODE_CONFIG]);
        }
        ClusterMode::Join => {
            let peer = answers
                .cluster
                .peer
                .as_deref()
                .context("joining needs a peer")?;
            let token = answers
                .cluster
                .join_token
                .as_ref()
                .context("joining needs a token")?;
            command
                .args(["join", "--config", NODE_CONFIG, "--peer", peer])
                .env("PULLBACK_JOIN_TOKEN", &token.0);
        }
    }
    let status = command.status().context("cannot run pullback cluster")?;
    if !status.success() {
        bail!("`pullback cluster` failed ({status}); see above");
    }
    Ok(())
}

/// Runs a command, failing with its standard error when it fails.
pub fn run_quiet(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_one_address_in_each_subnet() {
        let routes = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            enp0s2\t0002000A\t00000000\t0001\t0\t0\t1024\t00FFFFFF\t0\t0\t0\n\
            enp0s2\t00000000\t0202000A\t0003\t0\t0\t1024\t00000000\t0\t0\t0\n\
            lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n\
            ens5\t0A00A8C0\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        assert_eq!(subnet_probes(routes), vec![Ipv4Addr::new(10, 0, 2, 1)]);
    }
}
