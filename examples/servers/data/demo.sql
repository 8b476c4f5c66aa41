-- Demo shop database for examples/servers/database.py.
-- Small enough to read in one screen, shaped like a real schema: keys, constraints,
-- nullable columns, a join table and a view, so describe_table and joins have
-- something to show.

PRAGMA foreign_keys = ON;

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    email       TEXT    NOT NULL UNIQUE,
    country     TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    referred_by INTEGER REFERENCES customers (id)
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    discontinued INTEGER NOT NULL DEFAULT 0 CHECK (discontinued IN (0, 1))
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    ordered_at  TEXT    NOT NULL,
    shipped_at  TEXT
);

CREATE TABLE order_items (
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE INDEX orders_by_customer ON orders (customer_id);

CREATE VIEW order_totals AS
SELECT o.id AS order_id,
       c.name AS customer,
       o.status,
       SUM(i.quantity * i.unit_price_cents) AS total_cents
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items i ON i.order_id = o.id
GROUP BY o.id;

INSERT INTO customers (id, name, email, country, created_at, referred_by) VALUES
    (1, 'Ada Lovelace',    'ada@example.com',     'GB', '2025-01-14T09:12:00Z', NULL),
    (2, 'Grace Hopper',    'grace@example.com',   'US', '2025-02-03T16:40:00Z', NULL),
    (3, 'Alan Turing',     'alan@example.com',    'GB', '2025-02-11T11:05:00Z', 1),
    (4, 'Katherine Johnson', 'katherine@example.com', 'US', '2025-03-22T08:30:00Z', 2),
    (5, 'Edsger Dijkstra', 'edsger@example.com',  'NL', '2025-04-01T13:00:00Z', NULL),
    (6, 'Barbara Liskov',  'barbara@example.com', 'US', '2025-05-19T10:45:00Z', 2),
    (7, 'Tim Berners-Lee', 'tim@example.com',     'GB', '2025-06-07T15:20:00Z', 3),
    (8, 'Margaret Hamilton', 'margaret@example.com', 'US', '2025-07-30T07:55:00Z', NULL);

INSERT INTO products (id, sku, name, category, price_cents, discontinued) VALUES
    (1, 'KB-101', 'Mechanical keyboard',   'peripherals', 8900, 0),
    (2, 'MS-204', 'Wireless mouse',        'peripherals', 2900, 0),
    (3, 'MN-270', '27-inch monitor',       'displays',   24900, 0),
    (4, 'DK-330', 'USB-C dock',            'peripherals', 13900, 0),
    (5, 'HS-410', 'Noise-cancelling headset', 'audio',   17900, 0),
    (6, 'CB-050', 'USB-C cable (2 m)',     'cables',       900, 0),
    (7, 'WC-120', 'HD webcam',             'video',       5900, 1),
    (8, 'LS-015', 'Laptop stand',          'furniture',   3900, 0);

INSERT INTO orders (id, customer_id, status, ordered_at, shipped_at) VALUES
    (1,  1, 'shipped',   '2025-08-01T10:00:00Z', '2025-08-02T14:00:00Z'),
    (2,  2, 'shipped',   '2025-08-03T12:30:00Z', '2025-08-05T09:00:00Z'),
    (3,  3, 'paid',      '2025-08-10T18:45:00Z', NULL),
    (4,  1, 'shipped',   '2025-08-12T08:15:00Z', '2025-08-13T16:30:00Z'),
    (5,  4, 'cancelled', '2025-08-15T09:00:00Z', NULL),
    (6,  5, 'shipped',   '2025-08-20T11:11:00Z', '2025-08-22T10:00:00Z'),
    (7,  6, 'pending',   '2025-09-01T07:30:00Z', NULL),
    (8,  7, 'paid',      '2025-09-02T19:00:00Z', NULL),
    (9,  2, 'shipped',   '2025-09-05T13:20:00Z', '2025-09-06T12:00:00Z'),
    (10, 8, 'pending',   '2025-09-09T22:10:00Z', NULL),
    (11, 3, 'shipped',   '2025-09-12T10:40:00Z', '2025-09-15T08:45:00Z'),
    (12, 5, 'paid',      '2025-09-14T16:05:00Z', NULL);

INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES
    (1,  1, 1,  8900),
    (1,  6, 2,   900),
    (2,  3, 2, 24900),
    (2,  4, 1, 13900),
    (3,  5, 1, 17900),
    (4,  2, 1,  2900),
    (4,  8, 1,  3900),
    (5,  7, 1,  5900),
    (6,  1, 1,  8500),
    (6,  2, 1,  2900),
    (6,  6, 3,   900),
    (7,  3, 1, 24900),
    (8,  4, 1, 13900),
    (8,  6, 1,   900),
    (9,  5, 2, 17900),
    (10, 8, 1,  3900),
    (10, 2, 1,  2900),
    (11, 1, 1,  8900),
    (11, 3, 1, 24900),
    (12, 6, 4,   900);
