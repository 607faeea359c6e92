/* The demo shop's own script: a cart kept in localStorage, and the events a shop sends.
 * Everything goes through the nudge() command queue, so it works before nudge.js loads. */
(function () {
  'use strict';
  var shop = JSON.parse(document.getElementById('shop-data').textContent);
  var CART = 'demo_cart';
  var page = document.body.getAttribute('data-page');

  function $(id) { return document.getElementById(id); }
  function randomId(prefix) { return prefix + Math.random().toString(36).slice(2, 10); }
  function money(amount) {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: shop.currency }).format(amount);
  }
  function round(amount) { return Math.round(amount * 100) / 100; }

  function loadCart() {
    try {
      var cart = JSON.parse(localStorage.getItem(CART));
      if (cart && cart.cart_id && Array.isArray(cart.items)) return cart;
    } catch (e) {}
    return { cart_id: randomId('cart-'), items: [] };
  }
  function saveCart(cart) {
    localStorage.setItem(CART, JSON.stringify(cart));
    showCount(cart);
  }
  function cartTotal(cart) {
    return round(cart.items.reduce(function (sum, item) { return sum + item.price * item.quantity; }, 0));
  }
  function cartProducts(cart) {
    return cart.items.map(function (item) {
      return { product_id: item.product_id, name: item.name, price: item.price, quantity: item.quantity };
    });
  }
  function showCount(cart) {
    $('cart-count').textContent = cart.items.reduce(function (n, item) { return n + item.quantity; }, 0);
  }

  function productPage() {
    var product = JSON.parse($('product-data').textContent);
    nudge('track', 'product_viewed', {
      product_id: product.product_id, name: product.name, price: product.price,
      category: product.category, currency: shop.currency
    });
    $('add-to-cart').addEventListener('click', function () {
      var quantity = Math.max(1, Math.min(10, parseInt($('quantity').value, 10) || 1));
      var cart = loadCart();
      var line = cart.items.filter(function (item) { return item.product_id === product.product_id; })[0];
      if (line) line.quantity += quantity;
      else cart.items.push({ product_id: product.product_id, name: product.name, price: product.price, quantity: quantity });
      saveCart(cart);
      nudge('track', 'add_to_cart', {
        product_id: product.product_id, name: product.name, cart_id: cart.cart_id, quantity: quantity,
        price: product.price, cart_total: cartTotal(cart), currency: shop.currency
      });
      $('added').hidden = false;
    });
  }

  function cartPage() {
    var cart = loadCart();
    nudge('track', 'cart_viewed', {
      cart_id: cart.cart_id, cart_total: cartTotal(cart), currency: shop.currency, products: cartProducts(cart)
    });
    renderCart(cart);
  }
  function renderCart(cart) {
    var body = $('cart-lines');
    body.textContent = '';
    cart.items.forEach(function (item) {
      var row = document.createElement('tr');
      [item.name, String(item.quantity), money(item.price * item.quantity)].forEach(function (text) {
        var cell = document.createElement('td');
        cell.textContent = text;
        row.appendChild(cell);
      });
      var remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', 'Remove ' + item.name);
      remove.addEventListener('click', function () {
        cart.items = cart.items.filter(function (other) { return other !== item; });
        saveCart(cart);
        nudge('track', 'remove_from_cart', {
          product_id: item.product_id, cart_id: cart.cart_id, quantity: item.quantity,
          price: item.price, cart_total: cartTotal(cart), currency: shop.currency
        });
        renderCart(cart);
      });
      var cell = document.createElement('td');
      cell.appendChild(remove);
      row.appendChild(cell);
      body.appendChild(row);
    });
    $('cart-total').textContent = money(cartTotal(cart));
    $('cart-empty').hidden = cart.items.length > 0;
    $('cart-table').hidden = $('to-checkout').hidden = cart.items.length === 0;
  }

  function checkoutPage() {
    var cart = loadCart();
    var form = $('checkout-form');
    $('cart-empty').hidden = cart.items.length > 0;
    form.hidden = cart.items.length === 0;
    if (!cart.items.length) return;
    $('cart-total').textContent = money(cartTotal(cart));
    nudge('track', 'checkout_started', {
      cart_id: cart.cart_id, total: cartTotal(cart), currency: shop.currency, products: cartProducts(cart)
    });
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var orderId = randomId('order-');
      // Anonymous until now: identify folds this browser's history into the contact.
      nudge('identify', null, { email: $('email').value.trim(), firstName: $('first-name').value.trim() });
      nudge('track', 'order_completed', {
        order_id: orderId, cart_id: cart.cart_id, total: cartTotal(cart), currency: shop.currency,
        products: cartProducts(cart)
      });
      localStorage.removeItem(CART);
      // No need to wait for the events: nudge.js keeps them queued across the navigation.
      location.href = form.getAttribute('data-thanks-url') + '?order=' + encodeURIComponent(orderId);
    });
  }

  function consentPage() {
    var state = $('consent-state');
    // (nudge.js keeps a yes there until consent(false): 'granted' or the categories)
    if (localStorage.getItem('nudge_consent')) state.textContent = 'on (you accepted earlier)';
    $('consent-accept').addEventListener('click', function () {
      nudge('consent', true);
      state.textContent = 'on';
    });
    $('consent-decline').addEventListener('click', function () {
      nudge('consent', false);
      state.textContent = 'off';
    });
    $('consent-try').addEventListener('click', function () {
      nudge('track', 'consent_demo_clicked', {});
    });
  }

  // The footer's newsletter box, as a sign-up form embedded in a site posts: to its
  // own source, double opt-in on, so Nudge emails a link to confirm first. Double
  // opt-in applies to the contacts that source creates: the form sends an id of its
  // own, not the shop's visitor id (whose contact the shop's source made).
  function newsletterBox() {
    var form = $('newsletter-form');
    if (!form) return;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var email = $('newsletter-email').value.trim();
      if (!email) return;
      fetch('/api/v1/identify', {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'Authorization': 'Basic ' + btoa(form.getAttribute('data-key') + ':')
        },
        body: JSON.stringify({
          anonymousId: randomId('signup-'),
          traits: { email: email },
          context: { page: { url: location.href } }
        })
      }).then(function (response) {
        form.hidden = true;
        $('newsletter-done').hidden = !response.ok;
      });
    });
  }

  showCount(loadCart());
  newsletterBox();
  var pages = { product: productPage, cart: cartPage, checkout: checkoutPage, consent: consentPage };
  if (pages[page]) pages[page]();
})();
