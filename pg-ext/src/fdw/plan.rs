//! The planner callbacks: size estimates, scan and lookup paths, the plan
//! node, and EXPLAIN.
//!
//! A primary key lookup is possible when the quals give every primary key
//! column a value with `=` or `= ANY (array)` (an IN list), where the value
//! is an expression that does not read the table and is not volatile: a
//! constant, a parameter of a prepared statement or PL/pgSQL function, an
//! InitPlan's result (`id = (SELECT ...)`), or, for a parameterized path, a
//! column of another table in a nested loop join. Such values go into the
//! plan's `fdw_exprs`, so the executor evaluates them; the quals themselves
//! stay in the plan's qual list, and Postgres checks them again on the
//! decrypted rows.
//!
//! `fdw_private` of the plan is a list of Integer nodes: the scan kind, the
//! lock strength and wait policy, then one flag per primary key column that
//! tells whether its value is an array.

use std::ffi::{CString, c_void};

use pgrx::pg_sys;
use pgrx::{PgList, pg_guard};

use super::spi::RowLock;
use super::table::{Column, TableDef};
use super::values::ValueClass;
use super::{ROWS_SCHEMA, or_raise};
use crate::error::PgError;

/// `fdw_private` kind of a plan that scans every row.
const KIND_SCAN: i32 = 0;
/// `fdw_private` kind of a plan that looks rows up by primary key.
const KIND_LOOKUP: i32 = 1;

/// Estimated cost of one statement on the rows table, with its index probe.
const STATEMENT_COST: f64 = 4.0;
/// Estimated cost of opening, decoding and converting one row.
const ROW_COST: f64 = 0.2;
/// Rows a scan fetches per statement; see `scan::FETCH_ROWS`.
const FETCH_ROWS: f64 = 256.0;
/// Most combinations of key clauses tried for parameterized paths.
const MAX_KEY_COMBINATIONS: usize = 32;

/// A primary key column's value found in a clause.
#[derive(Clone, Copy)]
struct KeyMatch {
    /// The expression that gives the value (or an array of values).
    expr: *mut pg_sys::Expr,
    /// Whether `expr` is an array, from `= ANY (...)`.
    is_array: bool,
    /// The other relations the expression reads; empty for a value known
    /// before the scan starts.
    outer: *mut pg_sys::Bitmapset,
}

/// Returns whether a primary key of type `type_oid` supports lookups, which
/// needs one stored form per value. The event trigger rejects other primary
/// key types.
pub fn key_type_supported(type_oid: pg_sys::Oid) -> bool {
    match ValueClass::of(type_oid) {
        ValueClass::Other => matches!(
            type_oid,
            pg_sys::UUIDOID | pg_sys::DATEOID | pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID
        ),
        // char(n) compares without trailing spaces, so 'a' and 'a ' are
        // equal keys with different stored text.
        ValueClass::Text => type_oid != pg_sys::BPCHAROID,
        _ => true,
    }
}

/// Returns the stored class of a key value of type `type_oid`, so that a
/// column and the value it is compared to can be matched.
fn key_class(type_oid: pg_sys::Oid) -> (u8, pg_sys::Oid) {
    match ValueClass::of(type_oid) {
        ValueClass::Int2 | ValueClass::Int4 | ValueClass::Int8 => (0, pg_sys::Oid::INVALID),
        ValueClass::Float4 | ValueClass::Float8 => (1, pg_sys::Oid::INVALID),
        ValueClass::Bool => (2, pg_sys::Oid::INVALID),
        ValueClass::Bytea => (3, pg_sys::Oid::INVALID),
        ValueClass::Text => (4, pg_sys::Oid::INVALID),
        ValueClass::Other => (5, type_oid),
    }
}

/// Returns whether `opno` is the equality of `column`'s type, and a value of
/// type `value_type` that it finds equal is stored in the same form.
///
/// # Safety
///
/// Runs in the planner; reads catalog caches.
unsafe fn key_operator_ok(
    opno: pg_sys::Oid,
    column: &Column,
    value_type: pg_sys::Oid,
    collation: pg_sys::Oid,
) -> bool {
    if !key_type_supported(column.type_oid) || key_class(column.type_oid) != key_class(value_type) {
        return false;
    }
    // SAFETY: catalog lookups for valid type and operator oids.
    unsafe {
        let opclass = pg_sys::GetDefaultOpClass(column.type_oid, pg_sys::BTREE_AM_OID);
        if opclass == pg_sys::Oid::INVALID {
            return false;
        }
        let family = pg_sys::get_opclass_family(opclass);
        if pg_sys::get_op_opfamily_strategy(opno, family) != pg_sys::BTEqualStrategyNumber as i32 {
            return false;
        }
        // A nondeterministic collation finds different bytes equal.
        if column.class == ValueClass::Text
            && collation != pg_sys::Oid::INVALID
            && !pg_sys::get_collation_isdeterministic(collation)
        {
            return false;
        }
    }
    true
}

/// Strips binary-compatible casts, such as the one that makes a varchar
/// column a text operand.
unsafe fn strip_relabel(mut node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    // SAFETY: the caller passes a valid expression tree.
    unsafe {
        while !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_RelabelType {
            node = (*(node as *mut pg_sys::RelabelType)).arg.cast();
        }
    }
    node
}

/// Returns whether `node` is column `attno` of range table entry `relid`.
unsafe fn is_key_var(node: *mut pg_sys::Node, relid: u32, attno: i16) -> bool {
    // SAFETY: the caller passes a valid expression tree.
    unsafe {
        let node = strip_relabel(node);
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Var {
            return false;
        }
        let var = node as *mut pg_sys::Var;
        (*var).varno as u32 == relid && (*var).varattno == attno && (*var).varlevelsup == 0
    }
}

/// Finds the value that `clause` gives primary key column `column`
/// (attribute `attno` of `relid`).
///
/// # Safety
///
/// Runs in the planner with a valid clause.
unsafe fn match_key_clause(
    root: *mut pg_sys::PlannerInfo,
    clause: *mut pg_sys::Expr,
    relid: u32,
    attno: i16,
    column: &Column,
) -> Option<KeyMatch> {
    // SAFETY: the clause is a valid expression tree of the query.
    unsafe {
        let node = clause as *mut pg_sys::Node;
        let (opno, collation, other, is_array) = match (*node).type_ {
            pg_sys::NodeTag::T_OpExpr => {
                let op = node as *mut pg_sys::OpExpr;
                let args = PgList::<pg_sys::Node>::from_pg((*op).args);
                if args.len() != 2 {
                    return None;
                }
                let (left, right) = (args.get_ptr(0)?, args.get_ptr(1)?);
                let other = if is_key_var(left, relid, attno) {
                    right
                } else if is_key_var(right, relid, attno) {
                    left
                } else {
                    return None;
                };
                ((*op).opno, (*op).inputcollid, other, false)
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                let op = node as *mut pg_sys::ScalarArrayOpExpr;
                let args = PgList::<pg_sys::Node>::from_pg((*op).args);
                if !(*op).useOr || args.len() != 2 || !is_key_var(args.get_ptr(0)?, relid, attno) {
                    return None;
                }
                ((*op).opno, (*op).inputcollid, args.get_ptr(1)?, true)
            }
            _ => return None,
        };
        let value_type = if is_array {
            pg_sys::get_element_type(pg_sys::exprType(other))
        } else {
            pg_sys::exprType(other)
        };
        if value_type == pg_sys::Oid::INVALID
            || !key_operator_ok(opno, column, value_type, collation)
            || pg_sys::contain_volatile_functions(other)
            || pg_sys::contain_subplans(other)
        {
            return None;
        }
        let outer = pg_sys::pull_varnos(root, other);
        if pg_sys::bms_is_member(relid as i32, outer) {
            return None;
        }
        Some(KeyMatch {
            expr: other.cast(),
            is_array,
            outer,
        })
    }
}

/// Finds a value for every primary key column among `clauses`, a list of
/// RestrictInfo, using only clauses that read no other relation unless
/// `allow_outer`.
unsafe fn match_all_keys(
    root: *mut pg_sys::PlannerInfo,
    table: &TableDef,
    relid: u32,
    clauses: *mut pg_sys::List,
    allow_outer: bool,
) -> Option<Vec<KeyMatch>> {
    // SAFETY: clauses is a List of RestrictInfo of this relation.
    let clauses = unsafe { PgList::<pg_sys::RestrictInfo>::from_pg(clauses) };
    let mut matches = Vec::with_capacity(table.primary_key.len());
    for index in &table.primary_key {
        let column = &table.columns[*index];
        let attno = (*index + 1) as i16;
        let found = clauses.iter_ptr().find_map(|rinfo| {
            // SAFETY: each element is a RestrictInfo with a clause.
            unsafe {
                if (*rinfo).pseudoconstant {
                    return None;
                }
                match_key_clause(root, (*rinfo).clause, relid, attno, column)
                    .filter(|found| allow_outer || pg_sys::bms_is_empty(found.outer))
            }
        })?;
        matches.push(found);
    }
    Some(matches)
}

/// Estimated number of keys a lookup probes.
unsafe fn key_count(matches: &[KeyMatch]) -> f64 {
    matches
        .iter()
        .map(|found| {
            if found.is_array {
                // SAFETY: an array expression of the query.
                f64::from(unsafe { pg_sys::estimate_array_length(found.expr.cast()) }.max(1))
            } else {
                1.0
            }
        })
        .product()
}

/// Opens the rows table of `table` for the planner and returns its size.
fn rows_table_size(table: &TableDef) -> Result<(u32, f64), PgError> {
    let schema = CString::new(ROWS_SCHEMA).unwrap_or_default();
    let name = CString::new(table.rows_table.as_str()).unwrap_or_default();
    // SAFETY: catalog lookups, and a relation opened with AccessShareLock,
    // kept until the end of the transaction as the planner does.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), false);
        let oid = pg_sys::get_relname_relid(name.as_ptr(), namespace);
        if oid == pg_sys::Oid::INVALID {
            return Err(PgError::new(
                pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!(
                    "encrypted table \"{}\": its rows table {} does not exist",
                    table.name,
                    table.rows_table_sql()
                ),
            )
            .with_hint(
                "Restore the rows table from the dump that contains the encrypted table, or \
                 drop the encrypted table.",
            ));
        }
        let rel = pg_sys::table_open(oid, pg_sys::AccessShareLock as i32);
        let natts = (*(*rel).rd_att).natts as usize;
        let mut widths = vec![0i32; natts + 1];
        let mut pages: pg_sys::BlockNumber = 0;
        let mut tuples = 0.0;
        let mut visible = 0.0;
        pg_sys::estimate_rel_size(
            rel,
            widths.as_mut_ptr(),
            &mut pages,
            &mut tuples,
            &mut visible,
        );
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        Ok((pages, tuples))
    }
}

/// Estimates the relation's size from its rows table and its quals.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    let table = or_raise(TableDef::load(foreigntableid));
    let (pages, tuples) = or_raise(rows_table_size(&table));
    // SAFETY: the planner passes a valid base relation of this query.
    unsafe {
        let rel = &mut *baserel;
        rel.pages = pages;
        rel.tuples = tuples;
        let lookup = match_all_keys(root, &table, rel.relid, rel.baserestrictinfo, false);
        let rows = match lookup {
            Some(matches) => key_count(&matches).min(tuples.max(1.0)),
            None => {
                tuples
                    * pg_sys::clauselist_selectivity(
                        root,
                        rel.baserestrictinfo,
                        0,
                        pg_sys::JoinType::JOIN_INNER,
                        std::ptr::null_mut(),
                    )
            }
        };
        rel.rows = pg_sys::clamp_row_est(rows);
    }
}

fn private_kind(kind: i32) -> *mut pg_sys::List {
    let mut list = PgList::<pg_sys::Integer>::new();
    // SAFETY: makeInteger allocates a node in the planner's memory context.
    list.push(unsafe { pg_sys::makeInteger(kind) });
    list.into_pg()
}

/// Cost of a lookup of `keys` keys, each returning one row.
unsafe fn lookup_cost(rel: &pg_sys::RelOptInfo, keys: f64) -> (f64, f64) {
    // SAFETY: reads planner settings.
    let per_row = unsafe { pg_sys::cpu_tuple_cost } + ROW_COST + rel.baserestrictcost.per_tuple;
    (0.0, keys * (STATEMENT_COST + per_row))
}

/// Adds the paths of the relation: one lookup path when the quals give the
/// whole primary key, else a scan path and parameterized lookup paths for
/// nested loop joins on the primary key.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    let table = or_raise(TableDef::load(foreigntableid));
    // SAFETY: the planner passes valid structures of this query; paths are
    // allocated in its memory context.
    unsafe {
        let rel = &mut *baserel;
        if let Some(matches) = match_all_keys(root, &table, rel.relid, rel.baserestrictinfo, false)
        {
            let (startup, total) = lookup_cost(rel, key_count(&matches));
            let path = pg_sys::create_foreignscan_path(
                root,
                baserel,
                std::ptr::null_mut(),
                rel.rows,
                startup,
                total,
                std::ptr::null_mut(),
                rel.lateral_relids,
                std::ptr::null_mut(),
                private_kind(KIND_LOOKUP),
            );
            pg_sys::add_path(baserel, path.cast());
            return;
        }

        let per_row = pg_sys::cpu_tuple_cost + ROW_COST + rel.baserestrictcost.per_tuple;
        let startup = STATEMENT_COST + rel.baserestrictcost.startup;
        let total = startup
            + pg_sys::seq_page_cost * f64::from(rel.pages)
            + rel.tuples * per_row
            + (rel.tuples / FETCH_ROWS).ceil() * STATEMENT_COST;
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            std::ptr::null_mut(),
            rel.rows,
            startup,
            total,
            std::ptr::null_mut(),
            rel.lateral_relids,
            std::ptr::null_mut(),
            private_kind(KIND_SCAN),
        );
        pg_sys::add_path(baserel, path.cast());

        add_parameterized_paths(root, baserel, &table);
    }
}

/// The argument of [`ec_matches_column`].
struct EcTarget {
    var: *mut pg_sys::Var,
}

/// Tells `generate_implied_equalities_for_column` whether an equivalence
/// class member is the primary key column being matched.
#[pg_guard]
unsafe extern "C-unwind" fn ec_matches_column(
    _root: *mut pg_sys::PlannerInfo,
    _rel: *mut pg_sys::RelOptInfo,
    _ec: *mut pg_sys::EquivalenceClass,
    em: *mut pg_sys::EquivalenceMember,
    arg: *mut c_void,
) -> bool {
    // SAFETY: arg is the EcTarget passed below; em is a member of a class.
    unsafe {
        let target = &*(arg as *const EcTarget);
        let expr = strip_relabel((*em).em_expr.cast());
        pg_sys::equal(expr.cast(), target.var.cast())
    }
}

/// Adds lookup paths parameterized by the other relations of join clauses
/// that give primary key columns their values, as postgres_fdw does for
/// its remote joins.
///
/// # Safety
///
/// Runs in GetForeignPaths.
unsafe fn add_parameterized_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    table: &TableDef,
) {
    // SAFETY: valid planner structures, as in get_foreign_paths.
    unsafe {
        let rel = &*baserel;
        let relid = rel.relid;
        let mut candidates: Vec<Vec<KeyMatch>> = Vec::with_capacity(table.primary_key.len());
        for index in &table.primary_key {
            let column = &table.columns[*index];
            let attno = (*index + 1) as i16;
            let mut found = Vec::new();
            let restrictions = PgList::<pg_sys::RestrictInfo>::from_pg(rel.baserestrictinfo);
            for rinfo in restrictions.iter_ptr() {
                if let Some(key) = match_key_clause(root, (*rinfo).clause, relid, attno, column)
                    && pg_sys::bms_is_empty(key.outer)
                {
                    found.push(key);
                    break;
                }
            }
            let mut join_clauses = PgList::<pg_sys::RestrictInfo>::from_pg(rel.joininfo);
            if rel.has_eclass_joins {
                let var = pg_sys::makeVar(
                    relid as i32,
                    attno,
                    column.type_oid,
                    column.typmod,
                    attribute_collation(table.relid, attno),
                    0,
                );
                let mut target = EcTarget { var };
                let implied = pg_sys::generate_implied_equalities_for_column(
                    root,
                    baserel,
                    Some(ec_matches_column),
                    (&raw mut target).cast(),
                    rel.lateral_referencers,
                );
                for rinfo in PgList::<pg_sys::RestrictInfo>::from_pg(implied).iter_ptr() {
                    join_clauses.push(rinfo);
                }
            }
            for rinfo in join_clauses.iter_ptr() {
                if !pg_sys::join_clause_is_movable_to(rinfo, baserel) {
                    continue;
                }
                if let Some(key) = match_key_clause(root, (*rinfo).clause, relid, attno, column)
                    && !pg_sys::bms_is_empty(key.outer)
                {
                    found.push(key);
                }
            }
            if found.is_empty() {
                return;
            }
            candidates.push(found);
        }

        let mut seen: Vec<*mut pg_sys::Bitmapset> = Vec::new();
        for combination in combinations(&candidates, MAX_KEY_COMBINATIONS) {
            let mut required = pg_sys::bms_copy(rel.lateral_relids);
            for key in &combination {
                required = pg_sys::bms_union(required, key.outer);
            }
            required = pg_sys::bms_del_member(required, relid as i32);
            if pg_sys::bms_is_empty(required)
                || seen.iter().any(|other| pg_sys::bms_equal(*other, required))
            {
                continue;
            }
            seen.push(required);
            let param_info = pg_sys::get_baserel_parampathinfo(root, baserel, required);
            if param_info.is_null() {
                continue;
            }
            let keys = key_count(&combination);
            let (startup, total) = lookup_cost(rel, keys);
            let path = pg_sys::create_foreignscan_path(
                root,
                baserel,
                std::ptr::null_mut(),
                pg_sys::clamp_row_est(keys),
                startup,
                total,
                std::ptr::null_mut(),
                required,
                std::ptr::null_mut(),
                private_kind(KIND_LOOKUP),
            );
            pg_sys::add_path(baserel, path.cast());
        }
    }
}

/// Up to `limit` ways to pick one element of each list.
fn combinations(lists: &[Vec<KeyMatch>], limit: usize) -> Vec<Vec<KeyMatch>> {
    let mut result: Vec<Vec<KeyMatch>> = vec![Vec::new()];
    for list in lists {
        let mut next = Vec::new();
        for prefix in &result {
            for item in list {
                if next.len() >= limit {
                    break;
                }
                let mut combination = prefix.clone();
                combination.push(*item);
                next.push(combination);
            }
        }
        result = next;
    }
    result
}

/// Returns the collation of attribute `attno` of `relid`.
unsafe fn attribute_collation(relid: pg_sys::Oid, attno: i16) -> pg_sys::Oid {
    let mut type_oid = pg_sys::Oid::INVALID;
    let mut typmod = 0;
    let mut collation = pg_sys::Oid::INVALID;
    // SAFETY: reads the attribute's catalog entry.
    unsafe {
        pg_sys::get_atttypetypmodcoll(relid, attno, &mut type_oid, &mut typmod, &mut collation)
    };
    collation
}

/// Returns the row lock that the scan of range table entry `relid` takes.
/// It is FOR UPDATE when the relation is the target of UPDATE or DELETE, else
/// the strength of a `FOR UPDATE`/`FOR SHARE` clause that names it.
unsafe fn row_lock(root: *mut pg_sys::PlannerInfo, relid: u32) -> RowLock {
    // SAFETY: valid planner structures.
    unsafe {
        let command = (*(*root).parse).commandType;
        if pg_sys::bms_is_member(relid as i32, (*root).all_result_relids)
            && matches!(
                command,
                pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
            )
        {
            return RowLock {
                strength: pg_sys::LockClauseStrength::LCS_FORUPDATE,
                wait: pg_sys::LockWaitPolicy::LockWaitBlock,
            };
        }
        let marks = PgList::<pg_sys::PlanRowMark>::from_pg((*root).rowMarks);
        for mark in marks.iter_ptr() {
            if (*mark).rti == relid {
                return RowLock {
                    strength: (*mark).strength,
                    wait: (*mark).waitPolicy,
                };
            }
        }
        RowLock::NONE
    }
}

/// Builds the ForeignScan node: every qual in its qual list, the primary key
/// values in `fdw_exprs` for a lookup, and the scan kind and lock in
/// `fdw_private`.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
    best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    let table = or_raise(TableDef::load(foreigntableid));
    // SAFETY: valid planner structures; every node put into the plan is a
    // copyable node allocated in the planner's memory context.
    unsafe {
        let relid = (*baserel).relid;
        let path_private = PgList::<pg_sys::Integer>::from_pg((*best_path).fdw_private);
        let wants_lookup = path_private
            .get_ptr(0)
            .is_some_and(|kind| (*kind).ival == KIND_LOOKUP);
        let matches = if wants_lookup {
            match_all_keys(root, &table, relid, scan_clauses, true)
        } else {
            None
        };

        let mut fdw_exprs = PgList::<pg_sys::Node>::new();
        let mut private = PgList::<pg_sys::Integer>::new();
        let lock = row_lock(root, relid);
        let kind = if matches.is_some() {
            KIND_LOOKUP
        } else {
            KIND_SCAN
        };
        private.push(pg_sys::makeInteger(kind));
        private.push(pg_sys::makeInteger(lock.strength as i32));
        private.push(pg_sys::makeInteger(lock.wait as i32));
        for key in matches.unwrap_or_default() {
            fdw_exprs.push(pg_sys::copyObjectImpl(key.expr.cast()).cast());
            private.push(pg_sys::makeInteger(i32::from(key.is_array)));
        }

        let quals = pg_sys::extract_actual_clauses(scan_clauses, false);
        pg_sys::make_foreignscan(
            tlist,
            quals,
            relid,
            fdw_exprs.into_pg(),
            private.into_pg(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}

/// The settings of a plan, read back from its `fdw_private`.
pub struct PlanSettings {
    /// Whether the plan looks rows up by primary key.
    pub lookup: bool,
    /// The lock the scan takes.
    pub lock: RowLock,
    /// For a lookup, whether each key value is an array.
    pub key_arrays: Vec<bool>,
}

impl PlanSettings {
    /// Reads the settings of a ForeignScan made by [`get_foreign_plan`].
    ///
    /// # Safety
    ///
    /// `plan` must be such a ForeignScan.
    pub unsafe fn read(plan: *mut pg_sys::ForeignScan) -> Self {
        // SAFETY: fdw_private is the list of Integer nodes built above.
        unsafe {
            let private = PgList::<pg_sys::Integer>::from_pg((*plan).fdw_private);
            let value = |index: usize| private.get_ptr(index).map_or(0, |node| (*node).ival);
            Self {
                lookup: value(0) == KIND_LOOKUP,
                lock: RowLock {
                    strength: value(1) as pg_sys::LockClauseStrength::Type,
                    wait: value(2) as pg_sys::LockWaitPolicy::Type,
                },
                key_arrays: (3..private.len()).map(|index| value(index) != 0).collect(),
            }
        }
    }
}

/// Adds `Persist Lookup: primary key` or `Persist Scan: all rows`, and the
/// row lock, to EXPLAIN output.
#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: node is the state of a ForeignScan made by get_foreign_plan.
    unsafe {
        let settings = PlanSettings::read((*node).ss.ps.plan.cast());
        if settings.lookup {
            explain_text("Persist Lookup", "primary key", es);
        } else {
            explain_text("Persist Scan", "all rows", es);
        }
        if settings.lock.is_some() {
            explain_text("Persist Lock", settings.lock.describe(), es);
        }
        if (*es).verbose {
            let relid = (*(*node).ss.ss_currentRelation).rd_id;
            if let Ok(table) = TableDef::load(relid) {
                explain_text("Persist Rows Table", &table.rows_table_sql(), es);
            }
        }
    }
}

unsafe fn explain_text(label: &str, value: &str, es: *mut pg_sys::ExplainState) {
    let label = CString::new(label).unwrap_or_default();
    let value = CString::new(value).unwrap_or_default();
    // SAFETY: both strings outlive the call, which copies them.
    unsafe { pg_sys::ExplainPropertyText(label.as_ptr(), value.as_ptr(), es) };
}
