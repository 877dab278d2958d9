//! The SQL of moving a store's contents to another store (`scimbridge db export|import|
//! move`, issue #12): every table of the schema, row by row as JSON, in foreign-key
//! order, and back. The dump format itself lives in `crate::dump`.
//!
//! Rows are read with `to_jsonb` and written back with `jsonb_populate_recordset`, so
//! each value passes through its type's own text form and comes back identical: the
//! audit chain's hashes, which cover the records' exact contents, verify on the target.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt as _;
use sqlx::{PgConnection, Postgres, Transaction};

use super::Store;

/// Tables the migrations (and `apps create`) fill by themselves: one row per app. A
/// target holding only these rows, for apps the dump also carries, counts as empty.
const PER_APP_TABLES: [&str; 3] = ["app", "audit_head", "app_user_count"];

/// The migration history is the target's own (it is migrated before an import).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// An identity column's sequence position: the next value it hands out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SequencePosition {
    /// The table.
    pub table: String,
    /// The identity column.
    pub column: String,
    /// The next value `nextval` would return.
    pub next: i64,
}

/// Why a target cannot take an import.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target already holds data.
    #[error("the target database is not empty: {0}")]
    NotEmpty(String),
    /// The dump's tables are not the target's.
    #[error("the dump's tables do not match the target's: {0}")]
    Tables(String),
    /// The database refused.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Quotes an identifier read from the catalog.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema's tables (the migration history excepted), parents before children, ties
/// by name, so rows can be inserted in this order with every foreign key satisfied.
async fn tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c \
         where c.relnamespace = current_schema()::regnamespace \
           and c.relkind in ('r', 'p') and c.relname <> $1 order by 1",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "select ch.relname::text, pa.relname::text from pg_constraint k \
           join pg_class ch on ch.oid = k.conrelid join pg_class pa on pa.oid = k.confrelid \
         where k.contype = 'f' and ch.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *conn)
    .await?;
    fk_order(&names, &edges)
        .map_err(|cycle| sqlx::Error::Protocol(format!("foreign keys form a cycle among: {cycle}")))
}

/// Orders `names` so that each table comes after the tables it references
/// (`(child, parent)` edges; self-references are ignored). Err: the tables left in a cycle.
fn fk_order(names: &[String], edges: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = names
        .iter()
        .map(|n| (n.as_str(), BTreeSet::new()))
        .collect();
    for (child, parent) in edges {
        if child != parent && parents.contains_key(parent.as_str()) {
            if let Some(p) = parents.get_mut(child.as_str()) {
                p.insert(parent.as_str());
            }
        }
    }
    let mut order = Vec::with_capacity(names.len());
    while !parents.is_empty() {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(_, p)| p.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return Err(parents.keys().copied().collect::<Vec<_>>().join(", "));
        }
        for n in ready {
            parents.remove(n);
            for p in parents.values_mut() {
                p.remove(n);
            }
            order.push(n.to_owned());
        }
    }
    Ok(order)
}

/// Identity columns of the schema's tables.
async fn identities(conn: &mut PgConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select c.relname::text, a.attname::text from pg_attribute a \
           join pg_class c on c.oid = a.attrelid \
         where c.relnamespace = current_schema()::regnamespace and c.relkind in ('r', 'p') \
           and a.attidentity <> '' and a.attnum > 0 and not a.attisdropped order by 1, 2",
    )
    .fetch_all(conn)
    .await
}

/// A consistent read of a whole store: one repeatable-read, read-only transaction.
pub struct FullRead {
    tx: Transaction<'static, Postgres>,
}

impl Store {
    /// The latest migration applied to this store (the schema version of its rows).
    pub async fn schema_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("select coalesce(max(version), 0) from _sqlx_migrations where success")
            .fetch_one(&self.pool)
            .await
    }

    /// Starts a consistent read of every table (concurrent writes on a Postgres source
    /// are not seen; the embedded store has no other writer while the CLI holds it).
    pub async fn read_all(&self) -> Result<FullRead, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        Ok(FullRead { tx })
    }

    /// Opens a target for an import: one transaction in which the target must be empty
    /// (see [`PER_APP_TABLES`]) and its user triggers are off, so the rows arrive as they
    /// were (no audit head, live-user count or ticket row made twice by a trigger).
    /// Disabling triggers needs the tables' owner, which the user that migrated is.
    pub async fn import_target(&self) -> Result<Target, TargetError> {
        let mut tx = self.pool.begin().await?;
        let tables = tables(&mut tx).await?;
        let mut held = Vec::new();
        for t in &tables {
            if PER_APP_TABLES.contains(&t.as_str()) {
                continue;
            }
            let any: bool =
                sqlx::query_scalar(&format!("select exists (select 1 from {})", ident(t)))
                    .fetch_one(&mut *tx)
                    .await?;
            if any {
                held.push(t.clone());
            }
        }
        if !held.is_empty() {
            return Err(TargetError::NotEmpty(format!(
                "it holds rows in {}",
                held.join(", ")
            )));
        }
        let apps: Vec<String> = sqlx::query_scalar("select app_id from app order by 1")
            .fetch_all(&mut *tx)
            .await?;
        for t in &tables {
            sqlx::query(&format!("alter table {} disable trigger user", ident(t)))
                .execute(&mut *tx)
                .await?;
        }
        // The per-app rows are replaced by the dump's (children first).
        for t in tables.iter().rev() {
            if PER_APP_TABLES.contains(&t.as_str()) {
                sqlx::query(&format!("delete from {}", ident(t)))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(Target {
            tx,
            tables,
            apps,
            columns: BTreeMap::new(),
        })
    }
}

impl FullRead {
    /// The tables to export, parents first.
    pub async fn tables(&mut self) -> Result<Vec<String>, sqlx::Error> {
        tables(&mut self.tx).await
    }

    /// How many rows `table` holds.
    pub async fn count(&mut self, table: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(&format!("select count(*) from {}", ident(table)))
            .fetch_one(&mut *self.tx)
            .await
    }

    /// Each row of `table` as a JSON object (one line of text), handed to `each`.
    pub async fn rows<E>(
        &mut self,
        table: &str,
        mut each: impl AsyncFnMut(String) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<sqlx::Error>,
    {
        let sql = format!("select to_jsonb(t)::text from {} t", ident(table));
        let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *self.tx);
        while let Some(row) = rows.try_next().await? {
            each(row).await?;
        }
        Ok(())
    }

    /// Where each identity column's sequence stands (ids deleted at the source are not
    /// handed out again at the target).
    pub async fn sequences(&mut self) -> Result<Vec<SequencePosition>, sqlx::Error> {
        let mut out = Vec::new();
        for (table, column) in identities(&mut self.tx).await? {
            let seq: String = sqlx::query_scalar("select pg_get_serial_sequence($1, $2)")
                .bind(ident(&table))
                .bind(&column)
                .fetch_one(&mut *self.tx)
                .await?;
            let (last, called): (i64, bool) =
                sqlx::query_as(&format!("select last_value, is_called from {seq}"))
                    .fetch_one(&mut *self.tx)
                    .await?;
            out.push(SequencePosition {
                table,
                column,
                next: if called { last + 1 } else { last },
            });
        }
        Ok(out)
    }

    /// Ends the read.
    pub async fn finish(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// An import in progress: one transaction on the target; dropped without
/// [`Target::commit`], it leaves the target as it was.
pub struct Target {
    tx: Transaction<'static, Postgres>,
    tables: Vec<String>,
    /// The apps the target had before (each must come back with the dump).
    apps: Vec<String>,
    /// Insertable (not generated) columns by table, looked up once.
    columns: BTreeMap<String, String>,
}

impl Target {
    /// The target's tables, parents first.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Inserts rows of `table` given as JSON objects, ids and all (`overriding system
    /// value`: identity columns take the source's ids).
    pub async fn insert(&mut self, table: &str, rows: &[String]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        if !self.columns.contains_key(table) {
            let cols: Vec<String> = sqlx::query_scalar(
                "select attname::text from pg_attribute where attrelid = $1::regclass \
                 and attnum > 0 and not attisdropped and attgenerated = '' order by attnum",
            )
            .bind(ident(table))
            .fetch_all(&mut *self.tx)
            .await?;
            let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            self.columns.insert(table.to_owned(), list);
        }
        let cols = &self.columns[table];
        let t = ident(table);
        let sql = format!(
            "insert into {t} ({cols}) overriding system value \
             select {cols} from jsonb_populate_recordset(null::{t}, $1::jsonb)"
        );
        let mut array = String::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
        array.push('[');
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(r);
        }
        array.push(']');
        sqlx::query(&sql).bind(array).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Sets every identity sequence to hand out `next` (from the dump) or, if higher, one
    /// past the table's largest id; checks the target's apps all came back; turns the
    /// triggers on again and commits.
    pub async fn commit(mut self, positions: &[SequencePosition]) -> Result<(), TargetError> {
        let missing: Vec<String> = sqlx::query_scalar(
            "select a from unnest($1::text[]) a where not exists \
             (select 1 from app where app_id = a) order by 1",
        )
        .bind(&self.apps)
        .fetch_all(&mut *self.tx)
        .await?;
        if !missing.is_empty() {
            return Err(TargetError::NotEmpty(format!(
                "it has app(s) {} that the dump does not carry",
                missing.join(", ")
            )));
        }
        for (table, column) in identities(&mut self.tx).await? {
            let from_dump = positions
                .iter()
                .find(|p| p.table == table && p.column == column)
                .map_or(1, |p| p.next);
            let sql = format!(
                "select setval(pg_get_serial_sequence($1, $2), \
                 greatest($3, coalesce((select max({c}) from {t}), 0) + 1), false)",
                c = ident(&column),
                t = ident(&table)
            );
            sqlx::query(&sql)
                .bind(ident(&table))
                .bind(&column)
                .bind(from_dump)
                .execute(&mut *self.tx)
                .await?;
        }
        for t in &self.tables {
            sqlx::query(&format!("alter table {} enable trigger user", ident(t)))
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// Checks that the dump's tables are the target's.
pub fn same_tables(dump: &[String], target: &[String]) -> Result<(), TargetError> {
    let d: BTreeSet<&String> = dump.iter().collect();
    let t: BTreeSet<&String> = target.iter().collect();
    if d == t {
        return Ok(());
    }
    let only_dump: Vec<&str> = d.difference(&t).map(|s| s.as_str()).collect();
    let only_target: Vec<&str> = t.difference(&d).map(|s| s.as_str()).collect();
    Err(TargetError::Tables(format!(
        "only in the dump: [{}]; only in the target: [{}]",
        only_dump.join(", "),
        only_target.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parents_come_before_children_and_cycles_are_named() {
        let names = s(&["task", "app", "scim_user", "audit"]);
        let edges = vec![
            ("task".to_owned(), "scim_user".to_owned()),
            ("task".to_owned(), "app".to_owned()),
            ("scim_user".to_owned(), "app".to_owned()),
            ("audit".to_owned(), "task".to_owned()),
            ("audit".to_owned(), "audit".to_owned()),
        ];
        assert_eq!(
            fk_order(&names, &edges).expect("no cycle"),
            s(&["app", "scim_user", "task", "audit"])
        );
        let cyclic = vec![
            ("a".to_owned(), "b".to_owned()),
            ("b".to_owned(), "a".to_owned()),
        ];
        assert_eq!(
            fk_order(&s(&["a", "b", "c"]), &cyclic).expect_err("a cycle"),
            "a, b"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("task"), "\"task\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
