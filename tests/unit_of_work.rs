//! A unit of work (issue 13, item 4): several aggregates of different types and a consumer position saved as
//! one atomic batch; a conflict on any stream writes nothing and names the aggregate; under concurrent
//! checkouts an invariant spanning two aggregates holds.

use foldlog::rkyv::{Archive, Deserialize, Serialize};
use foldlog::{Aggregate, DomainEvent, Repository, RepositoryError, Root, Store, UnitOfWork, ZeroCopy};

#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
enum OrderEvent {
    Placed { item: u32, quantity: u32 },
}

impl DomainEvent for OrderEvent {
    const SCHEMA_VERSION: u32 = 1;
    fn event_type(&self) -> &'static str {
        "Placed"
    }
}

#[derive(Default)]
struct Order {
    quantity: u32,
}

impl Aggregate for Order {
    const NAME: &'static str = "order";
    type Event = OrderEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, event: &ArchivedOrderEvent) {
        match event {
            ArchivedOrderEvent::Placed { quantity, .. } => self.quantity += quantity.to_native(),
        }
    }
}

#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = foldlog::rkyv)]
enum StockEvent {
    Restocked { quantity: u32 },
    Reserved { quantity: u32 },
}

impl DomainEvent for StockEvent {
    const SCHEMA_VERSION: u32 = 1;
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::Restocked { .. } => "Restocked",
            StockEvent::Reserved { .. } => "Reserved",
        }
    }
}

#[derive(Default)]
struct Stock {
    available: u32,
    reserved: u32,
}

impl Aggregate for Stock {
    const NAME: &'static str = "stock";
    type Event = StockEvent;
    type Codec = ZeroCopy;
    fn apply(&mut self, event: &ArchivedStockEvent) {
        match event {
            ArchivedStockEvent::Restocked { quantity } => self.available += quantity.to_native(),
            ArchivedStockEvent::Reserved { quantity } => {
                self.available -= quantity.to_native();
                self.reserved += quantity.to_native();
            }
        }
    }
}

/// The checkout: places order `id` and reserves its quantity of the item, in one unit of work; refused (no
/// write) when the stock is short.
fn checkout(store: &Store, id: &str, item: u32, quantity: u32) -> Result<bool, RepositoryError> {
    let (orders, stock) = (Repository::<Order>::new(store), Repository::<Stock>::new(store));
    let mut s = stock.get(&item.to_string())?;
    if s.available < quantity {
        return Ok(false);
    }
    s.record(StockEvent::Reserved { quantity });
    let mut o = Root::<Order>::new(id);
    o.record(OrderEvent::Placed { item, quantity });
    let mut unit = UnitOfWork::new(store);
    unit.add(orders, &mut o).add(stock, &mut s);
    unit.commit()?;
    Ok(true)
}

fn restock(store: &Store, item: u32, quantity: u32) {
    let stock = Repository::<Stock>::new(store);
    let mut s = stock.get(&item.to_string()).unwrap_or_else(|_| Root::new(item.to_string()));
    s.record(StockEvent::Restocked { quantity });
    stock.save(&mut s).expect("restock");
}

#[test]
fn aggregates_of_two_types_and_a_consumer_are_saved_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    restock(&store, 7, 10);
    let mut order = Root::<Order>::new("o-1");
    order.record(OrderEvent::Placed { item: 7, quantity: 3 });
    let stock = Repository::<Stock>::new(&store);
    let mut item = stock.get("7").expect("stock");
    item.record(StockEvent::Reserved { quantity: 3 });
    let mut unit = UnitOfWork::new(&store);
    unit.add(Repository::<Order>::new(&store), &mut order).add(stock, &mut item).consumer("checkout", 1);
    let saved = unit.commit().expect("commit");
    assert_eq!(saved.iter().map(|s| s.versions.clone()).collect::<Vec<_>>(), [1..2, 2..3]);
    assert_eq!((order.version(), item.version()), (1, 2), "both roots moved on");
    assert_eq!(store.next_position(), 3, "one restock, then one batch of two events");
    let positions: Vec<u64> = store.read_all(1).map(|e| e.expect("read").position()).collect();
    assert_eq!(positions, [1, 2]);
    assert_eq!(store.consumer_position("checkout"), Some(1));
    assert_eq!(stock.get("7").expect("reload").available, 7);
}

#[test]
fn a_conflict_on_any_stream_writes_nothing_and_names_the_aggregate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    restock(&store, 7, 10);
    let stock = Repository::<Stock>::new(&store);
    let mut stale = stock.get("7").expect("load");
    restock(&store, 7, 5); // someone else moved the stock stream
    stale.record(StockEvent::Reserved { quantity: 3 });
    let mut order = Root::<Order>::new("o-1");
    order.record(OrderEvent::Placed { item: 7, quantity: 3 });
    let before = store.next_position();
    let mut unit = UnitOfWork::new(&store);
    unit.add(Repository::<Order>::new(&store), &mut order).add(stock, &mut stale).consumer("checkout", 1);
    match unit.commit() {
        Err(RepositoryError::Conflict { id, loaded, actual }) => {
            assert_eq!((id.as_str(), loaded, actual), ("7", 1, 2))
        }
        other => panic!("expected a conflict on stock 7: {other:?}"),
    }
    assert_eq!(store.next_position(), before, "nothing written");
    assert!(Repository::<Order>::new(&store).get("o-1").is_err(), "the order was not placed");
    assert_eq!(store.consumer_position("checkout"), None);
    // A new aggregate under a taken id: AlreadyExists, and again nothing written.
    let mut again = Root::<Stock>::new("7");
    again.record(StockEvent::Restocked { quantity: 1 });
    let mut unit = UnitOfWork::new(&store);
    unit.add(stock, &mut again);
    assert!(matches!(unit.commit(), Err(RepositoryError::AlreadyExists { version: 2, .. })));
    assert_eq!(store.next_position(), before);
}

#[test]
fn concurrent_checkouts_never_reserve_more_than_the_stock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    restock(&store, 1, 100);
    let placed: u32 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let store = &store;
                s.spawn(move || {
                    let mut placed = 0;
                    for i in 0..40 {
                        let id = format!("w{w}-{i}");
                        // Retry on conflict: another checkout reserved meanwhile; reload and decide again.
                        loop {
                            match checkout(store, &id, 1, 1 + (i % 3)) {
                                Ok(true) => {
                                    placed += 1 + (i % 3);
                                    break;
                                }
                                Ok(false) => break,
                                Err(RepositoryError::Conflict { .. }) => continue,
                                Err(e) => panic!("checkout: {e}"),
                            }
                        }
                    }
                    placed
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    let stock = Repository::<Stock>::new(&store).get("1").expect("stock");
    assert_eq!(stock.reserved, placed, "every reservation belongs to a placed order");
    assert_eq!(stock.available + stock.reserved, 100, "never more reserved than stocked");
    let ordered: u32 = store
        .streams()
        .iter()
        .filter_map(|s| s.strip_prefix("order-"))
        .map(|id| Repository::<Order>::new(&store).get(id).expect("order").quantity)
        .sum();
    assert_eq!(ordered, placed, "every placed order reserved its quantity");
    assert!(placed >= 90, "the stock of 100 was nearly used up: {placed}");
}
