//! Test support for this crate and the crates above it: a private OpenLDAP (`slapd`) on free
//! loopback ports, its configuration, certificates and database in a temporary folder, loaded
//! offline with `slapadd` from a generated population of people and groups.
//!
//! The server behaves like a production one where it matters: binds as a service account
//! (the root DN would bypass limits), a size limit that cuts unpaged searches, LDAPS and
//! StartTLS with a private CA, a custom auxiliary class with its own attributes, nested groups
//! with a loop, a distribution list, people without an address, a binary value, a non-DN
//! member and a referral. The helpers panic with a full explanation when something is
//! missing, because a test that cannot set up its server has nothing better to do.

use crate::config::{ClassConfig, DirectoryConfig, EntryKind};
use pullback_domain::Secret;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The suffix of the test directory.
pub const SUFFIX: &str = "dc=example,dc=test";
/// The root DN, used only by the helpers that change the directory behind the client's back.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
/// The root DN's password.
pub const ROOT_PASSWORD: &str = "root-password-for-tests";
/// The account the client binds as: reads everything, writes too, and is held to the limits.
pub const SERVICE_DN: &str = "cn=pullback,ou=services,dc=example,dc=test";
/// The service account's password.
pub const SERVICE_PASSWORD: &str = "service-password-for-tests";
/// The departments people are spread over, in turn.
pub const DEPARTMENTS: [&str; 5] = ["Sales", "Engineering", "Finance", "Legal", "Support"];
/// People generated without any address.
pub const NO_ADDRESS: [usize; 3] = [13, 1313, 2613];
/// The person with a binary (non-UTF-8) `pullbackBadge`.
pub const BINARY_BADGE: usize = 9;
/// The distribution list's address.
pub const DL_ADDRESS: &str = "sales-team@example.test";
/// Where the referral entry sends clients.
pub const REFERRAL_URL: &str = "ldap://ldap.elsewhere.test/ou=elsewhere,dc=example,dc=test";

/// How long slapd gets to start listening.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long slapd gets to stop before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The generated directory: people `uid=user000000,ou=people,…` onwards and a fixed set of
/// groups. Every value is a function of the person's number, so tests can check any sample.
#[derive(Clone, Copy, Debug)]
pub struct Population {
    /// How many people.
    pub people: usize,
}

impl Population {
    /// A person's DN.
    pub fn person_dn(&self, i: usize) -> String {
        format!("uid=user{i:06},ou=people,{SUFFIX}")
    }

    /// A person's `mail`; `None` for the people without an address.
    pub fn address(&self, i: usize) -> Option<String> {
        (!NO_ADDRESS.contains(&i)).then(|| format!("user{i:06}@example.test"))
    }

    /// For every tenth person (from the fourth), a primary `SMTP:` proxy address that
    /// differs from `mail`.
    pub fn proxy_primary(&self, i: usize) -> Option<String> {
        (i % 10 == 3 && self.address(i).is_some())
            .then(|| format!("first{i}.last@corp.example.test"))
    }

    /// A person's `displayName`.
    pub fn display_name(&self, i: usize) -> String {
        format!("Given{i} Family{}", i % 97)
    }

    /// A person's `department`.
    pub fn department(&self, i: usize) -> &'static str {
        DEPARTMENTS[i % DEPARTMENTS.len()]
    }

    /// A person's `title`: every fiftieth is a manager.
    pub fn title(&self, i: usize) -> &'static str {
        if i.is_multiple_of(50) {
            "Manager"
        } else {
            "Analyst"
        }
    }

    /// A person's manager: the last fiftieth before them.
    pub fn manager(&self, i: usize) -> Option<String> {
        (!i.is_multiple_of(50)).then(|| self.person_dn(i - i % 50))
    }

    /// The custom `pullbackRiskTier`.
    pub fn risk_tier(&self, i: usize) -> &'static str {
        ["low", "medium", "high"][i % 3]
    }

    /// The custom `pullbackVip`.
    pub fn vip(&self, i: usize) -> bool {
        i % 100 == 7
    }

    /// A group's DN.
    pub fn group_dn(&self, name: &str) -> String {
        format!("cn={name},ou=groups,{SUFFIX}")
    }

    /// The group of a department: `dept-sales` and so on.
    pub fn department_group(&self, department: &str) -> String {
        self.group_dn(&format!("dept-{}", department.to_lowercase()))
    }

    /// Every group: one per department; `all-staff` holding those groups; `loop-a` and `loop-b`
    /// holding each other (and people 1 and 2); the distribution list `sales-team` holding
    /// `dept-sales` and person 4; and `odd-list`, whose custom member attribute holds a DN
    /// (person 5) and a value that is not one.
    pub fn group_dns(&self) -> Vec<String> {
        let mut groups: Vec<String> = DEPARTMENTS
            .iter()
            .map(|d| self.department_group(d))
            .collect();
        for name in ["all-staff", "loop-a", "loop-b", "sales-team", "odd-list"] {
            groups.push(self.group_dn(name));
        }
        groups
    }

    /// How many entries the test classes find: people and groups.
    pub fn entries(&self) -> usize {
        self.people + self.group_dns().len()
    }

    /// The LDIF `slapadd` loads.
    fn write_ldif(&self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        write!(
            out,
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n\
             o: Example\n\n"
        )?;
        for ou in ["people", "groups", "services"] {
            write!(
                out,
                "dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
            )?;
        }
        write!(
            out,
            "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: pullback\nuserPassword: {SERVICE_PASSWORD}\n\n"
        )?;
        write!(
            out,
            "dn: ou=elsewhere,{SUFFIX}\nobjectClass: referral\nobjectClass: extensibleObject\n\
             ou: elsewhere\nref: {REFERRAL_URL}\n\n"
        )?;
        for i in 0..self.people {
            out.write_all(self.person_ldif(i).as_bytes())?;
        }
        for group in self.groups_ldif() {
            out.write_all(group.as_bytes())?;
        }
        out.flush()
    }

    fn person_ldif(&self, i: usize) -> String {
        let mut text = format!(
            "dn: {}\nobjectClass: inetOrgPerson\nobjectClass: pullbackPerson\nuid: user{i:06}\n\
             cn: {}\nsn: Family{}\ndisplayName: {}\ndepartment: {}\ntitle: {}\n\
             employeeNumber: {i}\npullbackRiskTier: {}\npullbackVip: {}\n",
            self.person_dn(i),
            self.display_name(i),
            i % 97,
            self.display_name(i),
            self.department(i),
            self.title(i),
            self.risk_tier(i),
            if self.vip(i) { "TRUE" } else { "FALSE" },
        );
        if let Some(address) = self.address(i) {
            let _ = writeln!(text, "mail: {address}");
        }
        if let Some(primary) = self.proxy_primary(i) {
            let _ = write!(
                text,
                "proxyAddresses: SMTP:{primary}\nproxyAddresses: smtp:user{i:06}@example.test\n\
                 proxyAddresses: X500:/o=Example/ou=Exchange/cn=Recipients/cn=user{i}\n"
            );
        }
        if let Some(manager) = self.manager(i) {
            let _ = writeln!(text, "manager: {manager}");
        }
        if i == BINARY_BADGE {
            // 0xff 0xfe 0x00: not UTF-8.
            text.push_str("pullbackBadge:: //4A\n");
        }
        text.push('\n');
        text
    }

    fn groups_ldif(&self) -> Vec<String> {
        let group = |name: &str, members: &[String], extra: &str| {
            let mut text = format!(
                "dn: {}\nobjectClass: groupOfNames\nobjectClass: pullbackGroup\ncn: {name}\n",
                self.group_dn(name)
            );
            for member in members {
                let _ = writeln!(text, "member: {member}");
            }
            text.push_str(extra);
            text.push('\n');
            text
        };
        let person = |i: usize| self.person_dn(i.min(self.people.saturating_sub(1)));
        let mut groups = Vec::new();
        for (d, department) in DEPARTMENTS.iter().enumerate() {
            let members: Vec<String> = (d..self.people)
                .step_by(DEPARTMENTS.len())
                .map(|i| self.person_dn(i))
                .collect();
            let name = format!("dept-{}", department.to_lowercase());
            groups.push(group(&name, &members, ""));
        }
        let departments: Vec<String> = DEPARTMENTS
            .iter()
            .map(|d| self.department_group(d))
            .collect();
        groups.push(group("all-staff", &departments, ""));
        groups.push(group("loop-a", &[self.group_dn("loop-b"), person(1)], ""));
        groups.push(group("loop-b", &[self.group_dn("loop-a"), person(2)], ""));
        let dl_members = [self.department_group("Sales"), person(4)];
        groups.push(group(
            "sales-team",
            &dl_members,
            &format!("mail: {DL_ADDRESS}\n"),
        ));
        let odd = format!(
            "pullbackListMember: {}\npullbackListMember: not a dn\n",
            person(5)
        );
        groups.push(group("odd-list", &[person(0)], &odd));
        groups
    }
}

/// The schema of the custom classes: an auxiliary class for people with Pullback's own
/// attributes and two of Active Directory's, and one for groups with an address and a member
/// list that is plain text.
const SCHEMA: &str = "\
attributetype ( 2.25.106685896367324432272340237594682906257.1.1 NAME 'pullbackRiskTier'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 2.25.106685896367324432272340237594682906257.1.2 NAME 'pullbackVip'
    EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( 2.25.106685896367324432272340237594682906257.1.3 NAME 'pullbackBadge'
    EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 2.25.106685896367324432272340237594682906257.1.4 NAME 'pullbackListMember'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.2.840.113556.1.2.210 NAME 'proxyAddresses'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.2.840.113556.1.2.141 NAME 'department'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 2.25.106685896367324432272340237594682906257.2.1 NAME 'pullbackPerson'
    AUXILIARY MAY ( pullbackRiskTier $ pullbackVip $ pullbackBadge $ proxyAddresses $
    department ) )
objectclass ( 2.25.106685896367324432272340237594682906257.2.2 NAME 'pullbackGroup'
    AUXILIARY MAY ( mail $ pullbackListMember $ proxyAddresses ) )
";

/// What the private slapd holds and offers.
#[derive(Clone, Debug)]
pub struct SlapdOptions {
    /// How many people to generate.
    pub people: usize,
    /// The size limit for the service account; paged searches may go past it.
    pub size_limit: usize,
    /// Whether the syncprov overlay keeps `contextCSN` on the suffix (as replicated servers
    /// do); without it a client can only go by the `entryCSN`s it sees.
    pub context_csn: bool,
}

impl Default for SlapdOptions {
    fn default() -> SlapdOptions {
        SlapdOptions {
            people: 3_000,
            size_limit: 500,
            context_csn: true,
        }
    }
}

/// Why the private slapd could not be set up or asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or a program could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The system's error.
        source: io::Error,
    },
    /// A program ran and failed, or slapd did not come up; with its output.
    #[error("{0}")]
    Failed(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// An entry as `ldapsearch` printed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LdifEntry {
    /// The DN.
    pub dn: String,
    /// Attribute values by attribute name as printed; base64 values keep their encoding.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// A running private slapd; stopped when dropped.
#[derive(Debug)]
pub struct Slapd {
    dir: TempDir,
    port: u16,
    tls_port: u16,
    population: Population,
    child: Option<Child>,
    load_time: Duration,
}

impl Slapd {
    /// Starts a slapd with the default population (3,000 people) and a size limit of 500.
    ///
    /// # Panics
    /// When slapd cannot be configured or started; the message says why.
    pub fn start() -> Slapd {
        Slapd::start_with(&SlapdOptions::default())
    }

    /// [`Slapd::start`] with options.
    ///
    /// # Panics
    /// When slapd cannot be configured or started.
    pub fn start_with(options: &SlapdOptions) -> Slapd {
        Slapd::try_start(options).unwrap_or_else(|e| panic!("private slapd: {e}"))
    }

    /// Writes the configuration and certificates, loads the population and starts slapd.
    pub fn try_start(options: &SlapdOptions) -> Result<Slapd, HarnessError> {
        if options.people < 10 {
            return Err(HarnessError::Failed(
                "the population needs at least 10 people (every group needs members)".into(),
            ));
        }
        ensure_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("pullback-slapd-")
            .tempdir()
            .map_err(io_error("creating a temporary folder"))?;
        let root = dir.path().to_owned();
        fs::create_dir(root.join("db")).map_err(io_error("creating the database folder"))?;
        make_certificates(&root)?;
        fs::write(root.join("pullback.schema"), SCHEMA).map_err(io_error("writing the schema"))?;
        let config = root.join("slapd.conf");
        fs::write(&config, config_text(&root, options)?).map_err(io_error("writing slapd.conf"))?;

        let population = Population {
            people: options.people,
        };
        let ldif = root.join("population.ldif");
        population
            .write_ldif(&ldif)
            .map_err(io_error("writing the LDIF"))?;
        let loading = Instant::now();
        let output = Command::new(program("slapadd"))
            .arg("-q")
            .arg("-f")
            .arg(&config)
            .arg("-l")
            .arg(&ldif)
            .output()
            .map_err(io_error("running slapadd"))?;
        check(&output, "slapadd")?;
        let load_time = loading.elapsed();

        let port = free_port()?;
        let tls_port = free_port()?;
        let log = File::create(root.join("slapd.log")).map_err(io_error("creating slapd.log"))?;
        let errors = log.try_clone().map_err(io_error("opening slapd.log"))?;
        // `-d 0` keeps slapd in the foreground as this process's child, so it is stopped by its
        // own PID and never outlives the test by detaching.
        let child = Command::new(program("slapd"))
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(&config)
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .map_err(io_error("running slapd"))?;
        let mut slapd = Slapd {
            dir,
            port,
            tls_port,
            population,
            child: Some(child),
            load_time,
        };
        slapd.wait_until_listening()?;
        Ok(slapd)
    }

    fn wait_until_listening(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_DEADLINE;
        for port in [self.port, self.tls_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    return Err(HarnessError::Failed(format!(
                        "slapd exited ({status}) before listening on {port}:\n{}",
                        self.log()
                    )));
                }
                if Instant::now() > deadline {
                    return Err(HarnessError::Failed(format!(
                        "slapd did not listen on 127.0.0.1:{port} within {START_DEADLINE:?}\n{}",
                        self.log()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// What was loaded.
    pub fn population(&self) -> Population {
        self.population
    }

    /// How long `slapadd` took to load the population.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The plain port's URL, `ldap://127.0.0.1:PORT/` (StartTLS offered).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// The LDAPS URL.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}/", self.tls_port)
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM file of another CA, which did not sign the server certificate.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// A client configuration for this server: plain LDAP, the service account, the test
    /// classes (people with addresses in `mail` and `proxyAddresses`; their custom auxiliary
    /// class; groups; the groups' custom member list) and a short timeout.
    pub fn config(&self) -> DirectoryConfig {
        let mut config = DirectoryConfig::new(&self.url(), &[SUFFIX]);
        config.bind_dn = Some(SERVICE_DN.to_owned());
        config.bind_password = Some(Secret(SERVICE_PASSWORD.to_owned()));
        config.timeout_secs = 30;
        let mut people = ClassConfig::people("inetOrgPerson");
        people.mail_attributes = vec!["mail".into(), "proxyAddresses".into()];
        people.keep = vec!["employeeNumber".into()];
        let mut custom = ClassConfig::people("pullbackPerson");
        custom.mail_attributes = Vec::new();
        custom.keep = vec![
            "pullbackRiskTier".into(),
            "pullbackVip".into(),
            "pullbackBadge".into(),
        ];
        let groups = ClassConfig::groups("groupOfNames", "member");
        let lists = ClassConfig {
            object_class: "pullbackGroup".into(),
            kind: EntryKind::Group,
            mail_attributes: vec!["mail".into()],
            keep: Vec::new(),
            member_attribute: Some("pullbackListMember".into()),
        };
        config.classes = vec![people, custom, groups, lists];
        config
    }

    /// [`Slapd::config`] over LDAPS with the right CA.
    pub fn ldaps_config(&self) -> DirectoryConfig {
        let mut config = self.config();
        config.url = self.ldaps_url();
        config.ca_file = Some(self.ca_file());
        config
    }

    /// [`Slapd::config`] with StartTLS and the right CA.
    pub fn starttls_config(&self) -> DirectoryConfig {
        let mut config = self.config();
        config.starttls = true;
        config.ca_file = Some(self.ca_file());
        config
    }

    /// Applies an LDIF change record as the root DN (`ldapmodify`).
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn modify(&self, ldif: &str) {
        let mut child = self
            .client_tool("ldapmodify", true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running ldapmodify: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ldif.as_bytes())
                .unwrap_or_else(|e| panic!("writing to ldapmodify: {e}"));
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for ldapmodify: {e}"));
        check(&output, "ldapmodify").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Deletes an entry as the root DN (`ldapdelete`).
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn delete(&self, dn: &str) {
        let output = self
            .client_tool("ldapdelete", true)
            .arg(dn)
            .output()
            .unwrap_or_else(|e| panic!("running ldapdelete: {e}"));
        check(&output, "ldapdelete").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Searches as the root DN (no limits) with `ldapsearch`, for checking what the client did.
    ///
    /// # Panics
    /// When the search fails.
    pub fn search(&self, base: &str, filter: &str, attributes: &[&str]) -> Vec<LdifEntry> {
        let output = self
            .client_tool("ldapsearch", true)
            .args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter])
            .args(attributes)
            .output()
            .unwrap_or_else(|e| panic!("running ldapsearch: {e}"));
        let text = check(&output, "ldapsearch").unwrap_or_else(|e| panic!("{e}"));
        parse_ldif(&text)
    }

    /// Searches as the service account without paging: what a client that does not page gets.
    /// Returns the entries printed and `ldapsearch`'s exit code (4 when the size limit cut
    /// the result).
    ///
    /// # Panics
    /// When `ldapsearch` cannot run.
    pub fn unpaged_search(&self, filter: &str) -> (usize, Option<i32>) {
        let output = self
            .client_tool("ldapsearch", false)
            .args(["-LLL", "-b", SUFFIX, filter, "1.1"])
            .output()
            .unwrap_or_else(|e| panic!("running ldapsearch: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        let entries = text.lines().filter(|l| l.starts_with("dn:")).count();
        (entries, output.status.code())
    }

    /// slapd's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn client_tool(&self, tool: &str, as_root: bool) -> Command {
        let (dn, password) = if as_root {
            (ROOT_DN, ROOT_PASSWORD)
        } else {
            (SERVICE_DN, SERVICE_PASSWORD)
        };
        let mut command = Command::new(tool);
        command
            .args(["-x", "-H", &self.url(), "-D", dn, "-w", password])
            // Keep the machine's own ldap.conf out of it.
            .env("LDAPNOINIT", "1");
        command
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM lets slapd close the database cleanly; the PID is this harness's own child.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .output();
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Installs slapd and the client tools with apt-get when they are missing, once per process.
fn ensure_installed() -> Result<(), HarnessError> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let present = |tool: &str| Path::new(&program(tool)).is_file() || in_path(tool);
            if present("slapd") && present("slapadd") && present("ldapmodify") {
                return Ok(());
            }
            let output = Command::new("apt-get")
                .args(["install", "-y", "-qq", "slapd", "ldap-utils"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .map_err(|e| format!("slapd is missing and apt-get could not run: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "slapd is missing; `apt-get install -y slapd ldap-utils` failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Ok(())
        })
        .clone()
        .map_err(HarnessError::Failed)
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// slapd and slapadd live in /usr/sbin, which a test's PATH may lack.
fn program(tool: &str) -> String {
    let sbin = format!("/usr/sbin/{tool}");
    if !in_path(tool) && Path::new(&sbin).is_file() {
        sbin
    } else {
        tool.to_owned()
    }
}

/// The packaged schema folder (read only; the machine's own slapd configuration is not used).
fn schema_dir() -> Result<PathBuf, HarnessError> {
    [
        "/etc/ldap/schema",
        "/etc/openldap/schema",
        "/usr/local/etc/openldap/schema",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|dir| dir.join("inetorgperson.schema").is_file())
    .ok_or_else(|| HarnessError::Failed("OpenLDAP's schema files are missing".to_owned()))
}

fn config_text(root: &Path, options: &SlapdOptions) -> Result<String, HarnessError> {
    let schema = schema_dir()?;
    let schema = schema.display();
    let root = root.display();
    let limit = options.size_limit;
    // mdb reserves its map size up front; a generous one costs only address space.
    let map_bytes = (1u64 << 30).max(options.people as u64 * 16 * 1024);
    let (syncprov_module, syncprov_overlay) = if options.context_csn {
        ("moduleload syncprov", "overlay syncprov")
    } else {
        ("", "")
    };
    Ok(format!(
        "include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {root}/pullback.schema
modulepath /usr/lib/ldap
moduleload back_mdb
{syncprov_module}
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCACertificateFile {root}/ca.pem
TLSCertificateFile {root}/server.pem
TLSCertificateKeyFile {root}/server.key

database mdb
suffix \"{SUFFIX}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {root}/db
maxsize {map_bytes}
index objectClass eq
index entryCSN eq
index member eq
index mail eq
sizelimit size.soft={limit} size.hard={limit} size.prtotal=unlimited
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact=\"{SERVICE_DN}\" write
  by * none
{syncprov_overlay}
"
    ))
}

/// A test CA, a server certificate for 127.0.0.1 signed by it, and a second CA that signed
/// nothing.
fn make_certificates(root: &Path) -> Result<(), HarnessError> {
    let ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
               extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
    fs::write(root.join("server.ext"), ext).map_err(io_error("writing server.ext"))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = |name: &str| -> Vec<String> {
        let mut args: Vec<String> = ["req", "-x509"].iter().map(|s| s.to_string()).collect();
        args.extend(ec.iter().map(|s| s.to_string()));
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2"].map(String::from));
        args.extend(["-subj", &format!("/CN=Pullback test {name}")].map(String::from));
        args
    };
    let mut request: Vec<String> = vec!["req".into()];
    request.extend(ec.iter().map(|s| s.to_string()));
    request.extend(
        [
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]
        .map(String::from),
    );
    let sign: Vec<String> = [
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]
    .map(String::from)
    .to_vec();
    for args in [ca("ca"), ca("other-ca"), request, sign] {
        let output = Command::new("openssl")
            .current_dir(root)
            .args(&args)
            .output()
            .map_err(io_error("running openssl"))?;
        check(&output, "openssl")?;
    }
    Ok(())
}

fn check(output: &Output, what: &str) -> Result<String, HarnessError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(HarnessError::Failed(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    )))
}

/// Reads `ldapsearch -LLL -o ldif-wrap=no` output.
fn parse_ldif(text: &str) -> Vec<LdifEntry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut entry = LdifEntry::default();
        for line in block.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = match value.strip_prefix(':') {
                Some(encoded) => format!("base64:{}", encoded.trim()),
                None => value.trim().to_owned(),
            };
            if name == "dn" {
                entry.dn = value;
            } else {
                entry
                    .attributes
                    .entry(name.to_owned())
                    .or_default()
                    .push(value);
            }
        }
        if !entry.dn.is_empty() {
            entries.push(entry);
        }
    }
    entries
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("finding a free port"))?
        .port();
    Ok(port)
}
