//! `--dcb`: dynamic consistency boundaries, foldlog against SQLite, one run.
//!
//! The workload is a course-enrolment "speedrun": sequential commands, each of which reads the events a
//! decision needs by a query, decides, and appends one event on the condition that nothing matching the same
//! query was stored after the head it read. Set-up (untimed) defines `courses` courses of [`CAPACITY`] seats
//! (`CourseDefined`, tagged `course:k`). Each command (timed) asks for student `student:n` to join course `k`,
//! both drawn uniformly up front, and reads
//!
//! ```text
//! [types CourseDefined | CourseCapacityChanged, tag course:k]
//!   OR [type StudentEnrolled, tag course:k]
//!   OR [type StudentEnrolled, tag student:n]
//! ```
//!
//! The student may join if the course exists and has a free seat, the student is not in it yet, and is in
//! fewer than [`STUDENT_COURSES_MAX`] courses; then `StudentEnrolled`, tagged `course:k` and `student:n`, is
//! appended with the condition. The decision reads each event's type and payload (the payload names the
//! course and the student, or the capacity), not its tags, so both engines hand back the same fields.
//!
//! Only SQLite joins foldlog here: it is the one peer with a query engine. redb and fjall would need a
//! tag-and-type index built by hand on top of their key-value tables, which would measure that index rather
//! than the engines.
//!
//! Modes, with the promise the rest of the harness gives them: a sync before every command that appends
//! returns (foldlog `Durability::Always`; SQLite WAL at `synchronous=FULL`, one transaction per append), for
//! a fixed time; and group commit, a sync every [`foldlog_bench::GROUP_EVENTS`] appends (foldlog `Durability::Group`; SQLite
//! `FULL` for every 1,000th commit), over a fixed list of commands. Beside each DCB run the same events are
//! appended without reads or conditions (the "plain" rows), so the cost of the boundary itself shows.

use std::path::Path;
use std::time::{Duration, Instant};

use foldlog::{AppendCondition, ExpectedVersion, NewEvent, Query, QueryItem, Store};
use foldlog_bench::{BenchResult, Measure, Mode, Rng};

use crate::peers::Cadence;

/// Seats per course.
pub const CAPACITY: u32 = 30;
/// Courses a student may be in at once.
pub const STUDENT_COURSES_MAX: u32 = 10;
/// The stream every enrolment goes to (streams carry no rule in a DCB application).
const STREAM: &str = "enrolments";
const COURSE_DEFINED: &str = "CourseDefined";
const CAPACITY_CHANGED: &str = "CourseCapacityChanged";
const ENROLLED: &str = "StudentEnrolled";

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Commands in the group-commit runs (the sync-every-command runs take a prefix of the same list).
    pub commands: usize,
    /// Courses defined before the clock starts.
    pub courses: usize,
    /// Students the commands draw from.
    pub students: usize,
    /// Time bound of the sync-every-command runs.
    pub always_for: Duration,
}

impl Plan {
    /// Sizes that keep most commands successful and reads short: ten courses per hundred commands (ten
    /// enrolments per course, a third of its seats, by the end of a group run) and a student per two commands
    /// (two courses each on average, far from the limit of ten).
    pub fn new(commands: usize, always_for: Duration) -> Plan {
        Plan { commands, courses: (commands / 10).max(1), students: (commands / 2).max(1), always_for }
    }

    /// The plan in words, for the CSV's metadata and the report.
    pub fn describe(&self, reps: usize) -> String {
        format!(
            "DCB course enrolment: {} courses of {CAPACITY} seats defined untimed, {} students, {} commands \
             (course and student uniform) in the group-commit runs, {} s per sync-every-command run, a student \
             in at most {STUDENT_COURSES_MAX} courses; query of 3 items (course's definition, course's \
             enrolments, student's enrolments); {} run(s)",
            self.courses,
            self.students,
            self.commands,
            self.always_for.as_secs_f64(),
            reps
        )
    }
}

/// The commands of one run and the strings they use, made before any clock starts.
pub struct Workload {
    courses: Vec<String>,
    students: Vec<String>,
    /// (course, student) per command.
    commands: Vec<(u32, u32)>,
    /// The `StudentEnrolled` payload per command: `course:k student:n`.
    payloads: Vec<Vec<u8>>,
}

impl Workload {
    /// The commands of `plan`, drawn from `seed`.
    pub fn new(plan: &Plan, seed: u64) -> Workload {
        let mut rng = Rng::new(seed);
        let courses: Vec<String> = (0..plan.courses).map(|k| format!("course:{k}")).collect();
        let students: Vec<String> = (0..plan.students).map(|n| format!("student:{n}")).collect();
        let commands: Vec<(u32, u32)> = (0..plan.commands)
            .map(|_| (rng.below(courses.len()) as u32, rng.below(students.len()) as u32))
            .collect();
        let payloads = commands
            .iter()
            .map(|&(k, n)| format!("{} {}", courses[k as usize], students[n as usize]).into_bytes())
            .collect();
        Workload { courses, students, commands, payloads }
    }
}

/// One engine under the DCB workload. Every call is one of the command's steps; the harness decides.
pub trait DcbEngine {
    /// Stores a `CourseDefined` per course (tag: the course id; payload: `course:k capacity`) and makes it
    /// durable. Not timed.
    fn define(&mut self, courses: &[String], capacity: u32) -> BenchResult<()>;
    /// Reads the enrolment query's events for `course` and `student`, oldest first, handing each one's type
    /// and payload to `visit`; returns the head the read covers (`None`: an empty log).
    fn read(
        &mut self,
        course: &str,
        student: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> BenchResult<Option<u64>>;
    /// Appends `StudentEnrolled` tagged `course` and `student` unless an event matching the same query was
    /// stored after `after`; `Ok(false)` when the condition refused it.
    fn append_if(
        &mut self,
        course: &str,
        student: &str,
        payload: &[u8],
        after: Option<u64>,
    ) -> BenchResult<bool>;
    /// Appends the same event with no read and no condition (the plain rows).
    fn append(&mut self, course: &str, student: &str, payload: &[u8]) -> BenchResult<()>;
    /// Makes everything appended so far durable (timed with the run, as in the append scenarios).
    fn finish(&mut self) -> BenchResult<()>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> BenchResult<()>;
}

/// How to open a DCB engine, and the setting that gives each mode its promise.
pub struct DcbSpec {
    /// Short name, as in the other tables.
    pub name: &'static str,
    /// The engine's setting for a mode, in its own words (the same as in the append scenarios).
    pub setting: fn(Mode) -> String,
    /// Opens (or creates) the engine's data in `dir`.
    pub open: fn(&Path, Mode) -> BenchResult<Box<dyn DcbEngine>>,
}

pub const FOLDLOG: DcbSpec =
    DcbSpec { name: "foldlog", setting: foldlog_bench::FOLDLOG.setting, open: FoldlogDcb::open };
pub const SQLITE: DcbSpec =
    DcbSpec { name: "sqlite", setting: crate::peers::SQLITE.setting, open: SqliteDcb::open };

// ---------------------------------------------------------------------------------------------------------
// The decision.

/// What a command learns from its read.
#[derive(Default)]
struct Decision {
    capacity: Option<u32>,
    in_course: u32,
    student_courses: u32,
    already: bool,
    malformed: bool,
}

/// Why a command appended nothing.
#[derive(Clone, Copy)]
enum Refusal {
    NoCourse,
    Full,
    Already,
    TooManyCourses,
}

impl Decision {
    fn see(&mut self, event_type: &str, payload: &[u8], course: &str, student: &str) {
        let text = std::str::from_utf8(payload).ok().and_then(|t| t.split_once(' '));
        let Some((first, second)) = text else {
            self.malformed = true;
            return;
        };
        match event_type {
            COURSE_DEFINED | CAPACITY_CHANGED if first == course => match second.parse() {
                Ok(c) => self.capacity = Some(c),
                Err(_) => self.malformed = true,
            },
            ENROLLED => {
                if first == course {
                    self.in_course += 1;
                    self.already |= second == student;
                }
                if second == student {
                    self.student_courses += 1;
                }
            }
            _ => self.malformed = true,
        }
    }

    fn verdict(&self) -> Result<(), Refusal> {
        match self.capacity {
            None => Err(Refusal::NoCourse),
            Some(_) if self.already => Err(Refusal::Already),
            Some(c) if self.in_course >= c => Err(Refusal::Full),
            Some(_) if self.student_courses >= STUDENT_COURSES_MAX => Err(Refusal::TooManyCourses),
            Some(_) => Ok(()),
        }
    }
}

/// What one run did.
#[derive(Default)]
struct Outcome {
    commands: usize,
    appended: usize,
    refused: [usize; 4],
    took: Duration,
    latencies: Vec<Duration>,
}

/// Runs the commands in order (until done or `bound` passes), then makes them durable.
fn run_commands(
    e: &mut dyn DcbEngine,
    w: &Workload,
    bound: Option<Duration>,
    time_each: bool,
) -> BenchResult<Outcome> {
    let mut out = Outcome::default();
    let started = Instant::now();
    for (&(k, n), payload) in w.commands.iter().zip(&w.payloads) {
        if bound.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let t = time_each.then(Instant::now);
        let (course, student) = (&w.courses[k as usize], &w.students[n as usize]);
        let mut d = Decision::default();
        let head = e.read(course, student, &mut |ty, p| d.see(ty, p, course, student))?;
        if d.malformed {
            return Err(
                format!("{course}, {student}: the read returned an event the query does not match").into()
            );
        }
        match d.verdict() {
            Ok(()) => {
                // The commands run one after another, so nothing can come between read and append.
                if !e.append_if(course, student, payload, head)? {
                    return Err(format!("{course}, {student}: condition refused a sequential append").into());
                }
                out.appended += 1;
            }
            Err(why) => out.refused[why as usize] += 1,
        }
        if let Some(t) = t {
            out.latencies.push(t.elapsed());
        }
        out.commands += 1;
    }
    e.finish()?;
    out.took = started.elapsed();
    Ok(out)
}

/// Appends every command's event (until done or `bound` passes) with no read and no condition.
fn run_plain(e: &mut dyn DcbEngine, w: &Workload, bound: Option<Duration>) -> BenchResult<Outcome> {
    let mut out = Outcome::default();
    let started = Instant::now();
    for (&(k, n), payload) in w.commands.iter().zip(&w.payloads) {
        if bound.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        e.append(&w.courses[k as usize], &w.students[n as usize], payload)?;
        out.commands += 1;
        out.appended += 1;
    }
    e.finish()?;
    out.took = started.elapsed();
    Ok(out)
}

/// One engine, one mode: the DCB run and the plain run, each on a fresh directory under `scratch`, in the
/// order `plain_first` says; their figures go to `out`.
pub fn run_engine(
    spec: &DcbSpec,
    mode: Mode,
    w: &Workload,
    plan: &Plan,
    scratch: &Path,
    plain_first: bool,
    out: &mut Vec<Measure>,
) -> BenchResult<()> {
    let (dcb, plain, bound) = match mode {
        Mode::Always => ("dcb_always", "dcb_plain_always", Some(plan.always_for)),
        _ => ("dcb_group", "dcb_plain_group", None),
    };
    let setting = (spec.setting)(mode);
    let mut put = |scenario, metric, unit, hi, value| {
        out.push(Measure {
            engine: spec.name,
            scenario,
            metric,
            unit,
            higher_is_better: hi,
            value,
            setting: setting.clone(),
        });
    };
    let mut rates = [0.0; 2];
    for is_plain in if plain_first { [true, false] } else { [false, true] } {
        let dir = scratch.join(format!("{}-{}", spec.name, if is_plain { plain } else { dcb }));
        let mut e = (spec.open)(&dir, mode)?;
        e.define(&w.courses, CAPACITY)?;
        let got = if is_plain {
            run_plain(e.as_mut(), w, bound)?
        } else {
            run_commands(e.as_mut(), w, bound, mode == Mode::Always)?
        };
        e.close()?;
        std::fs::remove_dir_all(&dir)?;
        let rate = got.commands as f64 / got.took.as_secs_f64().max(1e-9);
        rates[usize::from(is_plain)] = rate;
        if is_plain {
            put(plain, "throughput", "appends/s", true, rate);
            continue;
        }
        put(dcb, "throughput", "commands/s", true, rate);
        put(dcb, "appended", "% of commands", true, 100.0 * got.appended as f64 / got.commands.max(1) as f64);
        let [no_course, full, already, too_many] = got.refused;
        if no_course > 0 {
            return Err(format!("{}: {no_course} commands found no course", spec.name).into());
        }
        eprintln!(
            "  {} {dcb}: {} commands, {} appended, refused: {full} full, {already} already in, {too_many} in \
             {STUDENT_COURSES_MAX} courses",
            spec.name, got.commands, got.appended
        );
        if !got.latencies.is_empty() {
            let mut lat = got.latencies;
            lat.sort_unstable();
            let pick = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e6;
            put(dcb, "p50", "µs", false, pick(50));
            put(dcb, "p99", "µs", false, pick(99));
        }
    }
    // The two runs went back to back, so their ratio is steadier than the ratio of medians over runs that
    // met different spells of a shared disk.
    put(dcb, "per_plain", "× plain", true, rates[0] / rates[1].max(1e-9));
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// foldlog.

/// foldlog with the options of the other scenarios (`foldlog_bench::Foldlog::options`).
struct FoldlogDcb {
    store: Store,
    /// The query of the last read, which the append's condition reuses (a command builds it once).
    query: Option<Query>,
}

/// The enrolment decision's query for a course and a student.
fn enrolment_query(course: &str, student: &str) -> Query {
    Query::new([
        QueryItem::new().types([COURSE_DEFINED, CAPACITY_CHANGED]).tags([course]),
        QueryItem::new().types([ENROLLED]).tags([course]),
        QueryItem::new().types([ENROLLED]).tags([student]),
    ])
}

impl FoldlogDcb {
    fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn DcbEngine>> {
        let store = Store::open_with(dir, foldlog_bench::Foldlog::options(mode))?;
        Ok(Box::new(FoldlogDcb { store, query: None }))
    }
}

impl DcbEngine for FoldlogDcb {
    fn define(&mut self, courses: &[String], capacity: u32) -> BenchResult<()> {
        for chunk in courses.chunks(1000) {
            let payloads: Vec<Vec<u8>> =
                chunk.iter().map(|c| format!("{c} {capacity}").into_bytes()).collect();
            let tags: Vec<[&str; 1]> = chunk.iter().map(|c| [c.as_str()]).collect();
            let events: Vec<NewEvent<'_>> =
                payloads.iter().zip(&tags).map(|(p, t)| NewEvent::new(COURSE_DEFINED, p).tags(t)).collect();
            self.store.append("courses", ExpectedVersion::Any, &events)?;
        }
        Ok(self.store.sync()?)
    }

    fn read(
        &mut self,
        course: &str,
        student: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> BenchResult<Option<u64>> {
        let query = enrolment_query(course, student);
        let read = self.store.read(&query, None, None);
        let head = read.head();
        for e in read {
            let e = e?;
            visit(e.event_type(), e.payload());
        }
        self.query = Some(query);
        Ok(head)
    }

    fn append_if(
        &mut self,
        course: &str,
        student: &str,
        payload: &[u8],
        after: Option<u64>,
    ) -> BenchResult<bool> {
        let query = self.query.take().unwrap_or_else(|| enrolment_query(course, student));
        let tags = [course, student];
        let event = [NewEvent::new(ENROLLED, payload).tags(&tags)];
        match self.store.append_if(STREAM, &event, &AppendCondition::new(query).after(after)) {
            Ok(_) => Ok(true),
            Err(foldlog::Error::AppendConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn append(&mut self, course: &str, student: &str, payload: &[u8]) -> BenchResult<()> {
        let tags = [course, student];
        self.store.append(STREAM, ExpectedVersion::Any, &[NewEvent::new(ENROLLED, payload).tags(&tags)])?;
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        Ok(self.store.sync()?)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(self.store.close()?)
    }
}

// ---------------------------------------------------------------------------------------------------------
// SQLite.

/// SQLite through rusqlite (bundled), WAL mode, the same pragmas per mode as the append scenarios' peer:
/// events by position, a `(tag, position)` table, and an index on `(type, position)` for type-only queries
/// (foldlog keeps its type index too). Every statement is prepared once and cached.
struct SqliteDcb {
    conn: rusqlite::Connection,
    cadence: Cadence,
}

/// One `SELECT` per query item, joined by `UNION` (which also drops an event two items match), in position
/// order: the items' tag ranges are read from the `tags` key, the events by their position.
///
/// NOTE: `CROSS JOIN` is SQLite's way to fix the join order (tags first). Left to itself, without statistics,
/// the planner drives the `StudentEnrolled` items from the type index instead, walking every enrolment ever
/// stored per command; `ANALYZE` after the set-up would not help, since then only `CourseDefined` exists.
const SQL_READ: &str = "
    SELECT t.position, e.type, e.data FROM tags t CROSS JOIN events e ON e.position = t.position
     WHERE t.tag = ?1 AND e.type IN ('CourseDefined', 'CourseCapacityChanged')
    UNION
    SELECT t.position, e.type, e.data FROM tags t CROSS JOIN events e ON e.position = t.position
     WHERE t.tag = ?1 AND e.type = 'StudentEnrolled'
    UNION
    SELECT t.position, e.type, e.data FROM tags t CROSS JOIN events e ON e.position = t.position
     WHERE t.tag = ?2 AND e.type = 'StudentEnrolled'
    ORDER BY 1";

/// The condition: does any item match an event after `?3`? Each `EXISTS` stops at its first match.
const SQL_CONFLICT: &str = "
    SELECT EXISTS (SELECT 1 FROM tags t CROSS JOIN events e ON e.position = t.position
                    WHERE t.tag = ?1 AND t.position > ?3
                      AND e.type IN ('CourseDefined', 'CourseCapacityChanged'))
        OR EXISTS (SELECT 1 FROM tags t CROSS JOIN events e ON e.position = t.position
                    WHERE t.tag = ?1 AND t.position > ?3 AND e.type = 'StudentEnrolled')
        OR EXISTS (SELECT 1 FROM tags t CROSS JOIN events e ON e.position = t.position
                    WHERE t.tag = ?2 AND t.position > ?3 AND e.type = 'StudentEnrolled')";

impl SqliteDcb {
    fn open(dir: &Path, mode: Mode) -> BenchResult<Box<dyn DcbEngine>> {
        let conn = crate::peers::open_sqlite(dir, mode)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                position INTEGER PRIMARY KEY,
                type TEXT NOT NULL,
                data BLOB NOT NULL
            );
            CREATE INDEX IF NOT EXISTS events_by_type ON events (type, position);
            CREATE TABLE IF NOT EXISTS tags (
                tag TEXT NOT NULL,
                position INTEGER NOT NULL,
                PRIMARY KEY (tag, position)
            ) WITHOUT ROWID;",
        )?;
        Ok(Box::new(SqliteDcb { conn, cadence: Cadence::new(mode) }))
    }

    /// One transaction: the condition's check (if any), then the event and its two tags.
    fn write(
        &mut self,
        course: &str,
        student: &str,
        payload: &[u8],
        check: Option<i64>,
    ) -> BenchResult<bool> {
        let durable = self.cadence.next_is_durable();
        let group = matches!(self.cadence.mode, Mode::Group(_));
        if durable && group {
            // In WAL mode a FULL commit syncs the WAL, which makes the earlier NORMAL commits durable too.
            self.conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let conflict = match check {
            Some(after) => tx
                .prepare_cached(SQL_CONFLICT)?
                .query_row(rusqlite::params![course, student, after], |r| r.get::<_, bool>(0))?,
            None => false,
        };
        if !conflict {
            tx.prepare_cached("INSERT INTO events (type, data) VALUES ('StudentEnrolled', ?1)")?
                .execute([payload])?;
            let position = tx.last_insert_rowid();
            let mut tag = tx.prepare_cached("INSERT INTO tags (tag, position) VALUES (?1, ?2)")?;
            tag.execute(rusqlite::params![course, position])?;
            tag.execute(rusqlite::params![student, position])?;
        }
        // A refused condition commits an empty transaction, so the cadence's sync still happens.
        tx.commit()?;
        if durable && group {
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(!conflict)
    }
}

impl DcbEngine for SqliteDcb {
    fn define(&mut self, courses: &[String], capacity: u32) -> BenchResult<()> {
        let tx = self.conn.transaction()?;
        {
            let mut event =
                tx.prepare_cached("INSERT INTO events (type, data) VALUES ('CourseDefined', ?1)")?;
            let mut tag = tx.prepare_cached("INSERT INTO tags (tag, position) VALUES (?1, ?2)")?;
            for c in courses {
                event.execute([format!("{c} {capacity}").into_bytes()])?;
                tag.execute(rusqlite::params![c, tx.last_insert_rowid()])?;
            }
        }
        tx.commit()?;
        // Syncs the WAL and the database file, so the set-up is durable before the clock starts.
        self.conn.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))?;
        Ok(())
    }

    fn read(
        &mut self,
        course: &str,
        student: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> BenchResult<Option<u64>> {
        // One read transaction, so the head and the events come from the same snapshot.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
        let head: Option<i64> =
            tx.prepare_cached("SELECT max(position) FROM events")?.query_row([], |r| r.get(0))?;
        {
            let mut q = tx.prepare_cached(SQL_READ)?;
            let mut rows = q.query([course, student])?;
            while let Some(row) = rows.next()? {
                visit(row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_blob()?);
            }
        }
        tx.commit()?;
        Ok(head.map(|h| h as u64))
    }

    fn append_if(
        &mut self,
        course: &str,
        student: &str,
        payload: &[u8],
        after: Option<u64>,
    ) -> BenchResult<bool> {
        // Positions start at 1 (the rowid), so -1 stands for "every event counts".
        self.write(course, student, payload, Some(after.map_or(-1, |a| a as i64)))
    }

    fn append(&mut self, course: &str, student: &str, payload: &[u8]) -> BenchResult<()> {
        self.write(course, student, payload, None)?;
        Ok(())
    }

    fn finish(&mut self) -> BenchResult<()> {
        if self.cadence.mode != Mode::Always {
            self.conn.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both engines, on a tiny plan with two-seat courses squeezed by many commands, reach the same
    /// decisions: the same events appended, refusals for full courses included.
    #[test]
    fn both_engines_decide_alike() {
        let plan = Plan { commands: 400, courses: 20, students: 30, always_for: Duration::from_secs(60) };
        let w = Workload::new(&plan, 7);
        let dir = tempfile::tempdir().unwrap();
        let mut appended = Vec::new();
        for spec in [&FOLDLOG, &SQLITE] {
            let mut e = (spec.open)(&dir.path().join(spec.name), Mode::NoSync).unwrap();
            e.define(&w.courses, 2).unwrap();
            let got = run_commands(e.as_mut(), &w, None, false).unwrap();
            assert_eq!(got.commands, 400);
            assert!(got.refused[Refusal::Full as usize] > 0, "{}: no course filled up", spec.name);
            // Every course holds at most its two seats.
            for c in &w.courses {
                let mut d = Decision::default();
                e.read(c, "student:none", &mut |ty, p| d.see(ty, p, c, "student:none")).unwrap();
                assert!(d.in_course <= 2, "{}: {c} has {} students", spec.name, d.in_course);
            }
            appended.push(got.appended);
            e.close().unwrap();
        }
        assert_eq!(appended[0], appended[1]);
    }

    /// A decision made on an old head is refused by both engines.
    #[test]
    fn a_stale_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for spec in [&FOLDLOG, &SQLITE] {
            let mut e = (spec.open)(&dir.path().join(spec.name), Mode::NoSync).unwrap();
            e.define(&["course:0".to_owned()], 30).unwrap();
            let head = e.read("course:0", "student:1", &mut |_, _| {}).unwrap();
            assert!(e.append_if("course:0", "student:1", b"course:0 student:1", head).unwrap());
            let again = e.append_if("course:0", "student:2", b"course:0 student:2", head).unwrap();
            assert!(!again, "{}: a stale condition was accepted", spec.name);
            e.close().unwrap();
        }
    }
}
