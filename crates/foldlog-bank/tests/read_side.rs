//! The bank's read model (`BankTotals`) against the write side: for every account, money in − out − fees
//! equals the balance its fold gives, and a second catch-up reads only what came after the first.

#![expect(
    clippy::inconsistent_digit_grouping,
    reason = "amounts in cents, written units_cents as in the story"
)]

use foldlog::{Repository, Root, Store};
use foldlog_bank::{Account, BankTotals};

#[test]
fn the_projected_totals_agree_with_every_accounts_fold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let accounts: Repository<'_, Account> = Repository::new(&store);
    for (id, deposit) in [("a", 100_00), ("b", 20_00), ("c", 5_00)] {
        let mut root = Root::<Account>::new(id);
        root.execute(|a| a.open(id, deposit)).expect("open account");
        accounts.save(&mut root).expect("save");
    }
    let mut a = accounts.get("a").expect("load");
    a.execute(|a| a.withdraw(30_00)).expect("withdraw");
    a.execute(|a| a.charge_fee(2_00, "card")).expect("fee");
    a.execute(|a| a.refund_fee(1_00)).expect("refund");
    accounts.save(&mut a).expect("save");
    store
        .append("other-1", foldlog::ExpectedVersion::Any, &[foldlog::NewEvent::new("Noise", b"")])
        .expect("noise");

    let mut totals = BankTotals::default();
    assert_eq!(totals.catch_up(&store).expect("catch up"), 6, "the account events, not the other stream's");
    assert_eq!(totals.position, store.next_position(), "the position moved past the skipped event too");
    for (id, (money_in, money_out, fees)) in &totals.accounts {
        let balance = accounts.get(id).expect("fold").balance;
        assert_eq!(*money_in as i64 - *money_out as i64 - *fees as i64, balance, "account {id}");
    }
    let mut b = accounts.get("b").expect("load");
    b.execute(|a| a.deposit(7_00)).expect("deposit");
    accounts.save(&mut b).expect("save");
    assert_eq!(totals.catch_up(&store).expect("again"), 1, "only the new event is read");
    assert_eq!(totals.accounts["b"].0, 27_00);
}
