INSERT INTO analytics.orders (order_id, day, customer, amount_eur)
SELECT order_id, day, customer, amount_eur FROM staging.clean_orders;
