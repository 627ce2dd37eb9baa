import * as tf from '@tensorflow/tfjs-core'; import '@tensorflow/tfjs-backend-cpu';
tf.enableProdMode(); await tf.setBackend('cpu');
const B=64;
function time(name, f){ f(); const t=Date.now(); const r=f(); if (Array.isArray(r)) r.forEach(x=>x.dataSync()); else r.dataSync(); console.log(name, Date.now()-t,'ms'); }
const x=tf.randomUniform([B,28,28,1]); const w1=tf.randomUniform([3,3,1,16]);
const h1=tf.conv2d(x,w1,1,'valid'); const dy1=tf.onesLike(h1);
time('conv1 fwd', ()=>tf.conv2d(x,w1,1,'valid'));
time('conv1 dW', ()=>tf.grad(w=>tf.sum(tf.mul(tf.conv2d(x,w,1,'valid'),dy1)))(w1));
const p1=tf.maxPool(h1,2,2,'valid');
time('maxpool1 fwd', ()=>tf.maxPool(h1,2,2,'valid'));
time('maxpool1 bwd', ()=>tf.grad(h=>tf.sum(tf.maxPool(h,2,2,'valid'))))(h1));
const w2=tf.randomUniform([3,3,16,32]);
time('conv2 fwd', ()=>tf.conv2d(p1,w2,1,'valid'));
time('conv2 dW', ()=>tf.grad(w=>tf.sum(tf.conv2d(p1,w,1,'valid'))))(w2));
time('conv2 dX', ()=>tf.grad(p=>tf.sum(tf.conv2d(p,w2,1,'valid'))))(p1));
const h2=tf.conv2d(p1,w2,1,'valid');
time('maxpool2 bwd', ()=>tf.grad(h=>tf.sum(tf.maxPool(h,2,2,'valid'))))(h2));
time('relu bwd', ()=>tf.grad(h=>tf.sum(tf.relu(h))))(h1));
