// Command shop is the eventgen demo: it produces and consumes the events of
// schemas/examples/shop/shop.yaml with each guarantee, runs the
// NotifyCustomers at-least-once pipeline and the IssueReceipts exactly-once
// pipeline, and prints what was sent, received, dropped and dead-lettered.
// With a PostgreSQL database it also ships orders through the
// transactional outbox (OrderShipped) and runs the relay.
//
//	go run ./examples/shop                       # on an embedded Kafka (kfake)
//	go run ./examples/shop -brokers host:9092    # on a real cluster
//	go run ./examples/shop -postgres postgres://postgres@127.0.0.1:5432/test?sslmode=disable -redis 127.0.0.1:6379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

type options struct {
	brokers  string
	postgres string
	redis    string
	shipped  int
	orders   int
	payments int
	views    int
	timeout  time.Duration
	verbose  bool
}

func run(args []string, out io.Writer) error {
	var o options
	fl := flag.NewFlagSet("shop", flag.ContinueOnError)
	fl.StringVar(&o.brokers, "brokers", "", "comma-separated Kafka brokers (default: start an embedded kfake broker)")
	fl.StringVar(&o.postgres, "postgres", os.Getenv("EVENTGEN_POSTGRES_URL"), "PostgreSQL `URL` for the outbox part and the OrderPlaced and PaymentCaptured dedup stores (default $EVENTGEN_POSTGRES_URL; without one the outbox part is skipped and those stores are in memory)")
	fl.StringVar(&o.redis, "redis", "", "Redis `ADDR` (host:port or redis:// URL) for the OrderDelivered dedup store (default: in memory)")
	fl.IntVar(&o.shipped, "shipments", 50, "shipments written with their OrderShipped event through the outbox (every tenth rolls back)")
	fl.IntVar(&o.orders, "orders", 200, "OrderPlaced events to send (at-least-once)")
	fl.IntVar(&o.payments, "payments", 100, "PaymentCaptured events to send in transactions (exactly-once)")
	fl.IntVar(&o.views, "views", 500, "PageViewed events to send (at-most-once)")
	fl.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up if the demo has not finished by then")
	fl.BoolVar(&o.verbose, "v", false, "log what the runtime does")
	if err := fl.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	brokers := strings.Split(o.brokers, ",")
	if o.brokers == "" {
		cluster, err := kafkatest.New(kafkatest.Options{Partitions: 3})
		if err != nil {
			return fmt.Errorf("start embedded broker: %w", err)
		}
		defer cluster.Close()
		brokers = cluster.Brokers()
		fmt.Fprintf(out, "embedded Kafka (kfake) on %s\n", strings.Join(brokers, ","))
	}
	d := newDemo(brokers, o)
	st, err := openStores(ctx, o)
	if err != nil {
		return err
	}
	defer st.close()
	d.stores = st
	d.ledger.pool, d.ledger.table = st.pool, st.ledgerTable
	return d.run(ctx, out)
}

// demo holds what the producers, consumer and pipeline report.
type demo struct {
	opts    options
	cfg     kafka.Config
	metrics *kafka.Counters

	stores *stores
	group  string // the consumer group, new each run

	viewsReceived  atomic.Int64
	ordersHandled  sync.Map // order ID → times handled
	ordersReceived atomic.Int64
	notified       sync.Map // order ID → notifications received
	notifiedUnique atomic.Int64
	notifiedTotal  atomic.Int64
	delivered      sync.Map // order ID → times handled
	deliveredCount atomic.Int64
	pricesApplied  atomic.Int64
	ledger         ledger
	receipts       receiptReader
	shipments      *shipments // nil without PostgreSQL
	poisonOrder    event.UUID
	abortedPayment event.UUID
}

func newDemo(brokers []string, o options) *demo {
	metrics := &kafka.Counters{}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return &demo{
		opts:    o,
		metrics: metrics,
		cfg: kafka.Config{
			Brokers: brokers, ClientID: "shop-demo", Logger: logger, Metrics: metrics,
			Tune: func(c *sarama.Config) {
				c.Consumer.Offsets.Initial = sarama.OffsetOldest
				c.Consumer.Retry.Backoff = 100 * time.Millisecond
			},
		},
		poisonOrder:    event.NewUUID(),
		abortedPayment: event.NewUUID(),
		group:          "shop-demo-" + event.NewUUID().String()[:8],
	}
}

func (d *demo) run(ctx context.Context, out io.Writer) error {
	if err := createTopics(d.cfg.Brokers, 3); err != nil {
		return err
	}
	producer, err := shop.NewProducer(kafka.ProducerConfig{Config: d.cfg, TransactionalID: "shop-demo-producer"})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer producer.Close()

	consumer, err := shop.NewConsumer(kafka.ConsumerConfig{
		Config: d.cfg, GroupID: d.group,
		Retry: kafka.RetryPolicy{MaxAttempts: 3, Backoff: 10 * time.Millisecond},
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	consumer.HandlePageViewed(func(ctx context.Context, e *shop.PageViewed, rec kafka.AtMostOnceRecord) error {
		d.viewsReceived.Add(1)
		return nil
	})
	// OrderPlaced dedups in PostgreSQL: the order's row is written in the
	// store's transaction (tx is nil with the in-memory store).
	consumer.HandleOrderPlaced(d.stores.orders, func(ctx context.Context, e *shop.OrderPlaced, tx pgx.Tx, rec kafka.AtLeastOnceRecord) error {
		if e.OrderID == d.poisonOrder {
			return errors.New("warehouse rejects order: no such SKU")
		}
		if tx != nil {
			if _, err := tx.Exec(ctx, `INSERT INTO `+d.stores.ordersTable+` (order_id, customer_id, cents) VALUES ($1, $2, $3)`, e.OrderID.String(), e.CustomerID, e.Total.Cents); err != nil {
				return err
			}
		}
		if _, dup := d.ordersHandled.LoadOrStore(e.OrderID, true); !dup {
			d.ordersReceived.Add(1)
		}
		return nil
	})
	// OrderDelivered dedups in Redis (a lease per order while the handler runs).
	consumer.HandleOrderDelivered(d.stores.deliveries, func(ctx context.Context, e *shop.OrderDelivered, rec kafka.AtLeastOnceRecord) error {
		if _, dup := d.delivered.LoadOrStore(e.OrderID, true); !dup {
			d.deliveredCount.Add(1)
		}
		return nil
	})
	// PriceChanged has no dedup store: the schema says applying it twice is harmless.
	consumer.HandlePriceChanged(func(ctx context.Context, e *shop.PriceChanged, rec kafka.AtLeastOnceRecord) error {
		d.pricesApplied.Add(1)
		return nil
	})
	// PaymentCaptured is exactly-once into the ledger: the credit, the
	// dedup key and the partition's offset commit in one transaction.
	consumer.HandlePaymentCaptured(d.stores.payments, func(ctx context.Context, e *shop.PaymentCaptured, tx pgx.Tx, rec kafka.ExactlyOnceRecord) error {
		return d.ledger.credit(ctx, tx, e)
	})
	if d.opts.postgres != "" {
		s, err := newShipments(ctx, d.opts.postgres, d.opts.shipped)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		defer s.close()
		d.shipments = s
		consumer.HandleOrderShipped(s.handle)
	}
	consumer.HandleCustomerNotified(func(ctx context.Context, e *shop.CustomerNotified, rec kafka.AtLeastOnceRecord) error {
		d.notifiedTotal.Add(1)
		if _, dup := d.notified.LoadOrStore(e.OrderID, true); !dup {
			d.notifiedUnique.Add(1)
		}
		return nil
	})

	runCtx, stopRunning := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if err := d.receipts.start(runCtx, d.cfg.Brokers, d.abortedPayment, &wg); err != nil {
		stopRunning()
		return err
	}
	errs := make(chan error, 4)
	if d.shipments != nil {
		wg.Go(func() { errs <- d.shipments.runRelay(runCtx, d.cfg) })
	}
	wg.Add(3)
	go func() { defer wg.Done(); errs <- consumer.Run(runCtx) }()
	go func() {
		defer wg.Done()
		errs <- shop.RunNotifyCustomers(runCtx, kafka.PipelineConfig{Config: d.cfg, GroupID: "shop-notify"}, notifyCustomer)
	}()
	go func() {
		defer wg.Done()
		errs <- shop.RunIssueReceipts(runCtx, kafka.PipelineConfig{
			Config: d.cfg, GroupID: "shop-receipts", TransactionalID: "shop-receipts-1", BatchSize: 50,
		}, d.issueReceipt)
	}()

	err = d.produce(ctx, producer)
	if err == nil && d.shipments != nil {
		err = d.shipments.ship(ctx)
	}
	if err != nil {
		stopRunning()
		wg.Wait()
		return err
	}
	waitErr := d.waitUntilDone(ctx)
	stopRunning()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	d.report(out)
	if waitErr != nil {
		return waitErr
	}
	if n := d.receipts.duplicates.Load() + d.receipts.aborted.Load(); n > 0 {
		return fmt.Errorf("exactly-once violated: %d duplicate or aborted receipts", n)
	}
	if d.shipments != nil && d.shipments.phantom.Load() > 0 {
		return fmt.Errorf("outbox violated: %d events of rolled-back shipments", d.shipments.phantom.Load())
	}
	return nil
}

func notifyCustomer(ctx context.Context, in *shop.OrderPlaced, out shop.NotifyCustomersEmitter) error {
	return out.EmitCustomerNotified(&shop.CustomerNotified{
		OrderID:    in.OrderID,
		CustomerID: in.CustomerID,
		Message:    fmt.Sprintf("Thank you! Your order of %d item(s) is placed.", len(in.Items)),
	})
}

func (d *demo) issueReceipt(ctx context.Context, in *shop.PaymentCaptured, out shop.IssueReceiptsEmitter) error {
	return out.EmitReceiptIssued(&shop.ReceiptIssued{
		PaymentID: in.PaymentID,
		OrderID:   in.OrderID,
		Amount:    in.Amount,
		Lines:     []string{fmt.Sprintf("captured %d.%02d %s", in.Amount.Cents/100, in.Amount.Cents%100, in.Amount.Currency)},
	})
}

func (d *demo) produce(ctx context.Context, p *shop.Producer) error {
	now := time.Now()
	for i := range d.opts.views {
		// At-most-once: never blocks on the network; errors are only for invalid events.
		if err := p.SendPageViewed(ctx, &shop.PageViewed{SessionID: fmt.Sprintf("s%d", i%20), Path: "/products/" + fmt.Sprint(i), ViewedAt: now}); err != nil {
			return err
		}
	}
	for i := range d.opts.orders {
		id := event.NewUUID()
		if i == 0 {
			id = d.poisonOrder
		}
		e := &shop.OrderPlaced{
			OrderID: id, CustomerID: fmt.Sprintf("c%d", i), Total: shop.Money{Cents: int64(1000 + i), Currency: "EUR"},
			Status: shop.OrderStatusPending, Items: []string{"sku-1"}, PlacedAt: now,
		}
		if err := p.SendOrderPlaced(ctx, e); err != nil {
			return fmt.Errorf("send order: %w", err)
		}
	}
	for i := range d.opts.orders / 2 {
		e := &shop.OrderDelivered{OrderID: event.NewUUID(), Carrier: fmt.Sprintf("carrier-%d", i%3), DeliveredAt: now}
		if err := p.SendOrderDelivered(ctx, e); err != nil {
			return fmt.Errorf("send delivery: %w", err)
		}
	}
	for i := range d.opts.orders / 4 {
		e := &shop.PriceChanged{SKU: fmt.Sprintf("sku-%d", i), Price: shop.Money{Cents: int64(100 + i), Currency: "EUR"}, ChangedAt: now}
		if err := p.SendPriceChanged(ctx, e); err != nil {
			return fmt.Errorf("send price: %w", err)
		}
	}
	// Exactly-once: payments in transactions of 10; one transaction is aborted.
	for start := 0; start < d.opts.payments; start += 10 {
		err := p.InTx(ctx, func(tx shop.Tx) error {
			for i := start; i < min(start+10, d.opts.payments); i++ {
				e := &shop.PaymentCaptured{PaymentID: event.NewUUID(), OrderID: event.NewUUID(), Amount: shop.Money{Cents: int64(500 + i), Currency: "EUR"}, CapturedAt: now}
				if err := tx.SendPaymentCaptured(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("payment transaction: %w", err)
		}
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		return err
	}
	if err := tx.SendPaymentCaptured(&shop.PaymentCaptured{PaymentID: d.abortedPayment, OrderID: event.NewUUID(), Amount: shop.Money{Cents: 1, Currency: "EUR"}, CapturedAt: now}); err != nil {
		return err
	}
	return tx.Abort(ctx)
}

// waitUntilDone polls the counters until every event that must arrive has.
func (d *demo) waitUntilDone(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		orders := d.ordersReceived.Load()
		deadLettered := d.metrics.Get("OrderPlaced", kafka.DeadLettered)
		notified := d.notifiedUnique.Load()
		shipped := d.shipments == nil || d.shipments.done()
		if orders == int64(d.opts.orders-1) && deadLettered == 1 && notified == int64(d.opts.orders) && d.receipts.unique.Load() == int64(d.opts.payments) && shipped &&
			d.deliveredCount.Load() == int64(d.opts.orders/2) && d.pricesApplied.Load() >= int64(d.opts.orders/4) && d.ledger.count() == int64(d.opts.payments) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo did not finish: %d/%d orders, %d dead-lettered, %d/%d notifications, %d/%d receipts, shipments done %v, %d/%d deliveries, %d/%d prices, %d/%d payments in the ledger: %w",
				orders, d.opts.orders-1, deadLettered, notified, d.opts.orders, d.receipts.unique.Load(), d.opts.payments, shipped,
				d.deliveredCount.Load(), d.opts.orders/2, d.pricesApplied.Load(), d.opts.orders/4, d.ledger.count(), d.opts.payments, ctx.Err())
		case <-tick.C:
		}
	}
}

func (d *demo) report(out io.Writer) {
	receipts := d.receipts.unique.Load()
	m := d.metrics
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "event\tguarantee\tsent\tacked\treceived\tdropped\tdead-lettered\t")
	fmt.Fprintf(w, "PageViewed\tat-most-once\t%d\t-\t%d\t%d\t-\t\n", m.Get("PageViewed", kafka.Sent), d.viewsReceived.Load(), m.Get("PageViewed", kafka.Dropped))
	fmt.Fprintf(w, "OrderPlaced\tat-least-once\t%d\t%d\t%d\t-\t%d\t\n", m.Get("OrderPlaced", kafka.Sent), m.Get("OrderPlaced", kafka.Acked), d.ordersReceived.Load(), m.Get("OrderPlaced", kafka.DeadLettered))
	fmt.Fprintf(w, "CustomerNotified\tat-least-once\t-\t%d\t%d\t-\t-\t\n", m.Get("CustomerNotified", kafka.Acked), d.notifiedUnique.Load())
	fmt.Fprintf(w, "OrderDelivered\tat-least-once\t%d\t%d\t%d\t-\t%d\t\n", m.Get("OrderDelivered", kafka.Sent), m.Get("OrderDelivered", kafka.Acked), d.deliveredCount.Load(), m.Get("OrderDelivered", kafka.DeadLettered))
	fmt.Fprintf(w, "PriceChanged\tat-least-once\t%d\t%d\t%d\t-\t%d\t\n", m.Get("PriceChanged", kafka.Sent), m.Get("PriceChanged", kafka.Acked), d.pricesApplied.Load(), m.Get("PriceChanged", kafka.DeadLettered))
	fmt.Fprintf(w, "PaymentCaptured\texactly-once\t%d\t%d\t%d\t-\t-\t\n", m.Get("PaymentCaptured", kafka.Sent), m.Get("PaymentCaptured", kafka.Acked), d.ledger.count())
	fmt.Fprintf(w, "ReceiptIssued\texactly-once\t-\t-\t%d\t-\t-\t\n", receipts)
	w.Flush()
	fmt.Fprintf(out, "\npipeline NotifyCustomers: %d orders → %d customers notified (%d notifications received; at-least-once: a crash may repeat some)\n",
		d.opts.orders, d.notifiedUnique.Load(), d.notifiedTotal.Load())
	fmt.Fprintf(out, "pipeline IssueReceipts: %d committed payments → %d receipts, %d duplicates, %d from the aborted transaction\n",
		d.opts.payments, receipts, d.receipts.duplicates.Load(), d.receipts.aborted.Load())
	fmt.Fprintf(out, "order %s was dead-lettered to shop.orders.placed.dlq after 3 attempts\n", d.poisonOrder)
	fmt.Fprintf(out, "dedup stores: OrderPlaced and PaymentCaptured in %s, OrderDelivered in %s; ledger total %d cents over %d payments\n",
		d.stores.pgName, d.stores.redisName, d.ledger.total(), d.ledger.count())
	if d.shipments != nil {
		d.shipments.report(out)
	} else {
		fmt.Fprintln(out, "outbox: skipped, no PostgreSQL (-postgres URL or EVENTGEN_POSTGRES_URL runs it, e.g. -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable')")
	}
}
